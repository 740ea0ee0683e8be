"""Serving throughput and latency, side by side in one run, same model, 127.0.0.1.

    python bench/serving.py [--duration 10] [--rounds 5] [--connections 8] [--skip-mlflow]
                            [--only loopline,no-log,...] [--together] [--reconnect 100]

Servers, all started at once with 2 workers each, warmed up, then measured once per round
over several rounds, interleaved (the order turns each round and reverses every other one),
with wrk (-t1 -c8, one record per request; Debian's wrk, installed by `make bench`); medians
and the spread over rounds are printed, ratios are medians of per-round pairs:

- minimal:   the same ONNX model in the smallest BentoML service (bench/minimal_service.py),
             no validation, no logging;
- loopline:  `loopline serve` of the model: input contract, inference log, metrics;
- no-log:    the same with the inference log switched off (the logging cost);
- no-log again: a second, identical no-log server: its ratio to no-log is the run's noise
             floor (1.00 on an ideal machine), the yardstick of every other ratio;
- shipping:  the same shipping its log to a file:// store every second (the shipping cost);
- canary:    the same with a rollout routing 50% of requests to a candidate (a second
             copy of the model, under another version), each request naming a caller key;
- mlflow:    `mlflow models serve` of the same scikit-learn pipeline (in its own venv,
             bench/out/mlflow-venv, made on first use; --skip-mlflow to leave it out).

Then batches of 1,000 rows, as columns to /predict_batch and as records to /predict
(wrk -c8), against onnxruntime run in-process on the same rows. Needs a model in models/
(`make run` makes one).

Beside req/s and latency, each run gives the server's CPU time per request (all its
processes and threads, from /proc: what a request costs whatever else the machine runs, so
it varies less than req/s on a shared machine), the part of it in threads other than the
workers' main ones ("bg": the inference log's writer, the shipper), and how wrk's
connections landed on the two workers. Workers share one listening socket and the first to
wake accepts every pending connection, so a run could keep 30 of 32 connections on one
worker and measure half a server (req/s were bimodal); wrk now reconnects one request in
``--reconnect``, and ``--together`` loads the single-record servers all at once, each with
its own wrk, so that each ratio compares servers that saw the same machine at the same
moment. The logging and shipping costs, on a 2-core machine:

    python bench/serving.py --only "loopline,no-log,no-log again,shipping" --together \
        --connections 32 --rounds 10 --duration 5 --skip-mlflow
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OUT = ROOT / "bench" / "out"
MLFLOW_VENV = OUT / "mlflow-venv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_records(n: int) -> list[dict]:
    import pandas as pd

    card = json.loads((ROOT / "models/card.json").read_text())
    test = pd.read_parquet(ROOT / "data/prepared/test.parquet")
    test = pd.concat([test] * (n // len(test) + 1)).head(n)
    out = []
    for row in test[list(card["inputs"])].to_dict("records"):
        rec = {}
        for k, v in row.items():
            spec = card["inputs"][k]
            if pd.isna(v):
                continue
            rec[k] = int(v) if spec["type"] == "integer" else float(v) if spec["kind"] == "numeric" else v
        out.append(rec)
    return out


class Proc:
    def __init__(self, name: str, argv: list[str], url: str, env: dict, cwd: Path,
                 probe: tuple[str, bytes]) -> None:
        self.name, self.url, self.probe = name, url, probe
        self.out = open(OUT / f"{name}.log", "wb")  # noqa: SIM115 (closed by stop())
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float = 180.0) -> Proc:
        path, body = self.probe
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited; see {self.out.name}")
            try:
                r = httpx.post(self.url + path, content=body,
                               headers={"content-type": "application/json"}, timeout=5)
                if r.status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise SystemExit(f"{self.name} did not answer in {timeout:.0f}s; see {self.out.name}")

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.out.close()


def _tree(root: int) -> list[int]:
    """``root`` and its descendants (a server's arbiter and its workers, which circus puts in
    sessions of their own)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """CPU seconds so far of ``pids`` (``/proc/…/schedstat``, in nanoseconds): in all, and
    in their threads other than the main ones (in a worker: the inference log's writer, the
    shipper, the reloader)."""
    total = others = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                ns = int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            total += ns
            others += ns if task.name != str(pid) else 0
    return total / 1e9, others / 1e9


def _split(port: int) -> list[int]:
    """Established connections to ``port`` per server process, largest first."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    per: dict[str, int] = {}
    for pid in re.findall(r"pid=(\d+)", out):
        per[pid] = per.get(pid, 0) + 1
    return sorted(per.values(), reverse=True)


def wrk(url: str, body: bytes, *, connections: int, duration: int, warm: bool = True,
        pid: int | None = None, reconnect: int = 0) -> dict:
    """Requests/s and latency percentiles from one wrk run (after a 2 s warm-up if ``warm``).

    With ``pid`` (the server's process), also the server's CPU time per request (all its
    processes and threads: what a request costs, whatever else the machine runs) and how
    wrk's connections landed on its workers (``split``, sampled a second into the run).
    """
    return wrk_together([(url, body, pid)], connections=connections, duration=duration,
                        warm=warm, reconnect=reconnect)[0]


def _script(i: int, body: bytes, reconnect: int) -> Path:
    """wrk's Lua script of load ``i``: POST ``body``, report percentiles as JSON."""
    body_file = OUT / f"body-{i}.json"
    body_file.write_bytes(body)
    script = OUT / f"post-{i}.lua"
    # One request in ``reconnect`` asks the server to close its connection and wrk
    # connects again: a server's workers share one listening socket and the first to wake
    # accepts every pending connection, so wrk's connections, opened at once, can stay on
    # one worker for the whole run (30 of 32 in some rounds); reconnecting gives the other
    # worker a chance to take them, as it would under real traffic.
    close = f"n = n + 1\n  if n % {reconnect} == 0 then return closing end\n  " if reconnect else ""
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
        'local n, keep, closing = 0, nil, nil\n'
        'init = function(args)\n  keep = wrk.format()\n'
        '  closing = wrk.format(nil, nil, {["Content-Type"] = "application/json", '
        '["Connection"] = "close"})\nend\n'
        f'request = function()\n  {close}return keep\nend\n'
        'done = function(summary, latency, requests)\n'
        '  io.write(string.format("JSON {\\"p50\\": %d, \\"p99\\": %d, \\"errors\\": %d, '
        '\\"non2xx\\": %d}\\n", latency:percentile(50), latency:percentile(99), '
        'summary.errors.status + summary.errors.connect + summary.errors.read + '
        'summary.errors.write + summary.errors.timeout, summary.errors.status))\nend\n')
    return script


def wrk_together(loads: list[tuple[str, bytes, int | None]], *, connections: int, duration: int,
                 warm: bool = True, reconnect: int = 0) -> list[dict]:
    """:func:`wrk` on each ``(url, body, pid)`` at the same time (one wrk each): servers
    loaded together share whatever the machine gives at that moment, so their ratio does
    not depend on what else ran before or after."""
    bases = [["wrk", "-t1", f"-c{connections}", "-s", str(_script(i, body, reconnect)), url]
             for i, (url, body, _) in enumerate(loads)]
    if warm:
        for w in [subprocess.Popen([*b[:3], "-d2s", *b[3:]], stdout=subprocess.DEVNULL)
                  for b in bases]:
            w.wait()
    pids = [_tree(pid) if pid is not None else [] for _, _, pid in loads]
    cpu0 = [_cpu_seconds(p) for p in pids]
    runs = [subprocess.Popen([*b[:3], f"-d{duration}s", *b[3:]], stdout=subprocess.PIPE, text=True)
            for b in bases]
    time.sleep(min(1.0, duration / 4))
    splits = [_split(int(url.split(":")[2].split("/")[0])) if pid is not None else []
              for url, _, pid in loads]
    results = []
    for (url, _, _), run, p, c0, split in zip(loads, runs, pids, cpu0, splits, strict=True):
        out, _ = run.communicate()
        if run.returncode:
            raise SystemExit(f"wrk failed on {url}")
        cpu, background = (b - a for a, b in zip(c0, _cpu_seconds(p), strict=True))
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        extra = json.loads(out[out.index("JSON ") + 5:].splitlines()[0])
        results.append({"rps": rps, "p50_ms": extra["p50"] / 1000, "p99_ms": extra["p99"] / 1000,
                        "errors": extra["errors"], "split": split,
                        "cpu_ms": cpu * 1000 / requests if p and requests else None,
                        "background_us": background * 1e6 / requests if p and requests else None})
    return results


def ensure_mlflow() -> Path | None:
    py = MLFLOW_VENV / "bin" / "python"
    if not py.exists():
        print("making bench/out/mlflow-venv (mlflow 3, same scikit-learn and pandas) …", flush=True)
        from importlib import metadata

        pins = [f"{p}=={metadata.version(p)}" for p in ("scikit-learn", "pandas", "numpy", "scipy")]
        subprocess.run([str(BIN / "uv"), "venv", "-q", "-p", sys.executable, str(MLFLOW_VENV)], check=True)
        subprocess.run([str(BIN / "uv"), "pip", "install", "-q", "-p", str(py), "mlflow==3.*", *pins],
                       check=True)
    return py


def save_mlflow_model(py: Path, dest: Path) -> None:
    code = (
        "import joblib, mlflow.sklearn, sys\n"
        "model = joblib.load(sys.argv[1])\n"
        "mlflow.sklearn.save_model(model, sys.argv[2], serialization_format='cloudpickle')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([str(py), "-c", code, str(ROOT / "models/model.joblib"), str(dest)],
                   check=True, env=env, capture_output=True)


def setup(prefix: str, **extra: str) -> tuple[Path, dict[str, str]]:
    """Check for wrk and a built model; a temp dir and the environment of the servers."""
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk; `make bench` does it)")
    if not (ROOT / "models/model.onnx").is_file():
        raise SystemExit("no model in models/: run `make run` first")
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    return tmp, {**os.environ, "BENTOML_HOME": str(tmp / "bentoml"),
                 "BENTOML_DO_NOT_TRACK": "True", "OMP_WAIT_POLICY": "PASSIVE", **extra}


def _median(values: list[float]) -> float:
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=5, help="rounds over all servers")
    ap.add_argument("--connections", type=int, default=8,
                    help="wrk connections (more spread them over both workers of a server)")
    ap.add_argument("--reconnect", type=int, default=100,
                    help="each wrk connection closes and reconnects after this many requests, "
                         "so connections spread over a server's workers (0: never)")
    ap.add_argument("--together", action="store_true",
                    help="load the single-record servers all at once each round (one wrk "
                         "each): their ratios then see the same machine at the same moment")
    ap.add_argument("--skip-mlflow", action="store_true")
    ap.add_argument("--only", default="",
                    help="comma-separated servers to measure (of: minimal, loopline, no-log, "
                         "no-log again, shipping, canary, mlflow, batch); default all")
    args = ap.parse_args()
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    if only and "loopline" not in only:
        only.add("loopline")  # the reference of every ratio
    tmp, env = setup("loopline-bench-", LOOPLINE_LOG_STORE="off")
    one = json.dumps({"records": sample_records(1)}).encode()
    batch_records = sample_records(1000)
    batch = json.dumps({"records": batch_records}).encode()
    columns = {k: [r.get(k) for r in batch_records] for k in batch_records[0]}
    for rec in batch_records:
        columns.update({k: [r.get(k) for r in batch_records] for k in rec if k not in columns})
    batch_columns = json.dumps({"columns": columns}).encode()

    # loopline's own spec, from `loopline serve --dry-run`, with the log on and off
    specs = {}
    for name, enabled in (("loopline", True), ("no-log", False), ("no-log again", False),
                          ("shipping", True), ("canary", True)):
        spec = json.loads(subprocess.run(
            [str(BIN / "loopline"), "serve", "--dry-run", "--port", "1"], cwd=ROOT, env=env,
            capture_output=True, text=True, check=True).stdout)
        spec["log"].update(enabled=enabled, path=str(tmp / f"{name}.sqlite"))
        if name == "shipping":
            spec.setdefault("log_store", {}).update(every_seconds=1.0)
        if name == "canary":  # the split's hot path: a keyed hash and a compare per request
            spec["model"]["rollout"] = {**spec["model"], "version": "candidate", "share": 50.0,
                                        "tag": "bench#canary#1"}
        specs[name] = tmp / f"{name}.json"
        specs[name].write_text(json.dumps(spec))
    serve = [str(BIN / "bentoml"), "serve", "loopline.serving.service:LooplineService",
             "--host", "127.0.0.1", "--port", "{port}"]
    servers = {  # name: (argv, env, cwd, path, body)
        "minimal": ([str(BIN / "bentoml"), "serve", "minimal_service:Minimal", "--host",
                     "127.0.0.1", "--port", "{port}"],
                    {**env, "MINIMAL_ONNX": str(ROOT / "models/model.onnx"),
                     "MINIMAL_WORKERS": "2"}, ROOT / "bench", "/predict", one),
        "loopline": (serve, {**env, "LOOPLINE_SERVE_SPEC": str(specs["loopline"])}, tmp,
                     "/predict", one),
        "no-log": (serve, {**env, "LOOPLINE_SERVE_SPEC": str(specs["no-log"])}, tmp,
                   "/predict", one),
        # the same server twice: their ratio is the noise floor of the run (ideally 1.00)
        "no-log again": (serve, {**env, "LOOPLINE_SERVE_SPEC": str(specs["no-log again"])},
                         tmp, "/predict", one),
        "shipping": (serve, {**env, "LOOPLINE_SERVE_SPEC": str(specs["shipping"]),
                             "LOOPLINE_LOG_STORE": (tmp / "store").as_uri()}, tmp,
                     "/predict", one),
        "canary": (serve, {**env, "LOOPLINE_SERVE_SPEC": str(specs["canary"])}, tmp, "/predict",
                   json.dumps({"records": sample_records(1), "key": "customer-42"}).encode()),
    }
    if only:
        servers = {n: s for n, s in servers.items() if n in only}
    if not args.skip_mlflow and (not only or "mlflow" in only):
        py = ensure_mlflow()
        save_mlflow_model(py, tmp / "mlflow-model")
        servers["mlflow"] = (
            [str(py.parent / "mlflow"), "models", "serve", "-m", str(tmp / "mlflow-model"),
             "--env-manager", "local", "--workers", "2", "--host", "127.0.0.1",
             "--port", "{port}"],
            {**env, "PYTHONPATH": str(ROOT / "src"),
             "PATH": f"{py.parent}{os.pathsep}{os.environ.get('PATH', '')}"}, tmp,
            "/invocations", json.dumps({"dataframe_records": sample_records(1)}).encode())

    # Every server runs for the whole benchmark (idle ones cost nothing measurable) and is
    # measured once per round, the order turning each round and reversed every other one,
    # so no server is always first or last: the machine's drift over the run spreads evenly.
    procs: dict[str, Proc] = {}
    urls: dict[str, str] = {}
    try:
        for name, (argv, penv, cwd, path, body) in servers.items():
            port = free_port()
            urls[name] = f"http://127.0.0.1:{port}"
            procs[name] = Proc(name, [a.replace("{port}", str(port)) for a in argv], urls[name],
                               penv, cwd, (path, body))
        for p in procs.values():
            p.wait()
        runs = {n: (n, urls[n] + s[3], s[4]) for n, s in servers.items()}
        if not only or "batch" in only:
            runs.update({"batch columns": ("loopline", urls["loopline"] + "/predict_batch",
                                           batch_columns),
                         "batch records": ("loopline", urls["loopline"] + "/predict", batch)})
        print(f"warm-up, then {args.rounds} rounds of wrk -t1 -c{args.connections} "
              f"-d{args.duration}s per server (2 workers each), "
              f"{'loaded together' if args.together else 'interleaved'}:", flush=True)
        for _, url, body in runs.values():
            wrk(url, body, connections=args.connections, duration=2, reconnect=args.reconnect)
        rounds: dict[str, list[dict]] = {n: [] for n in runs}
        names = list(runs)
        together = [n for n in names if args.together and not n.startswith("batch")]
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            if r % 2:
                order.reverse()
            if together:  # all single-record servers at once, then the rest one by one
                order = [tuple(together)] + [n for n in order if n not in together]
            for step in order:
                group = step if isinstance(step, tuple) else (step,)
                results = wrk_together(
                    [(runs[n][1], runs[n][2], procs[runs[n][0]].proc.pid) for n in group],
                    connections=args.connections, duration=args.duration, warm=False,
                    reconnect=args.reconnect)
                for name, result in zip(group, results, strict=True):
                    rounds[name].append(result)
            print(f"  round {r + 1}: " + "  ".join(
                f"{n} {rounds[n][-1]['rps']:.0f} ({rounds[n][-1]['cpu_ms']:.2f} ms cpu, "
                f"{'/'.join(map(str, rounds[n][-1]['split']))})" for n in names), flush=True)
    finally:
        for p in procs.values():
            p.stop()

    shutil.rmtree(tmp, ignore_errors=True)
    raw_rows = None
    if "batch columns" in runs:  # in-process onnxruntime on the same 1,000 rows (all cores)
        raw_rows = onnxruntime_rows(batch_records, args.duration)
        rounds["onnxruntime 1k"] = [{"rps": raw_rows / 1000}] * args.rounds

    def ratio(a: str, b: str, key: str = "rps") -> list[float]:
        """Per round (paired: measured seconds apart in the same round)."""
        return [x[key] / y[key] for x, y in zip(rounds[a], rounds[b], strict=True)]

    wanted = [
        ("loopline vs minimal BentoML, req/s", "loopline", "minimal", "rps", "≥ 0.8"),
        ("loopline vs mlflow models serve, req/s", "loopline", "mlflow", "rps", "≥ 8"),
        ("loopline vs minimal BentoML, p99", "loopline", "minimal", "p99_ms", "≤ 1.2"),
        ("/predict_batch rows/s vs in-process onnxruntime", "batch columns", "onnxruntime 1k",
         "rps", "≥ 0.5"),
        ("/predict (1,000 records) rows/s vs onnxruntime", "batch records", "onnxruntime 1k",
         "rps", "(records)"),
        ("same server twice (noise floor), req/s", "no-log again", "no-log", "rps", "≈ 1"),
        ("same server twice (noise floor), CPU per request", "no-log", "no-log again",
         "cpu_ms", "≈ 1"),
        ("logging on vs off, req/s", "loopline", "no-log", "rps", "≥ 0.95"),
        ("logging off vs on, server CPU per request", "no-log", "loopline", "cpu_ms", "≥ 0.95"),
        ("shipping on (every 1 s) vs off, req/s", "shipping", "loopline", "rps", "≥ 0.95"),
        ("shipping off vs on, server CPU per request", "loopline", "shipping", "cpu_ms",
         "≥ 0.95"),
        ("canary split (50%, keyed) vs plain, req/s", "canary", "loopline", "rps", "≥ 0.9"),
    ]
    rows = [(label, ratio(a, b, key), target) for label, a, b, key, target in wanted
            if a in rounds and b in rounds]

    def background_share(a: str, b: str) -> list[float]:
        """1 - the CPU that ``a``'s background threads spend beyond ``b``'s, as a share of
        ``a``'s CPU per request, per round: what the writer (or shipper) takes from a
        CPU-bound server, leaving out the little it costs on the response path."""
        return [1 - (x["background_us"] - y["background_us"]) / (x["cpu_ms"] * 1000)
                for x, y in zip(rounds[a], rounds[b], strict=True)]

    for label, a, b in (("logging on vs off, 1 - writer's share of CPU", "loopline", "no-log"),
                        ("shipping on vs off, 1 - shipper's share of CPU", "shipping",
                         "loopline")):
        if a in rounds and b in rounds:
            rows.append((label, background_share(a, b), "≥ 0.95"))
    print()
    print(f"{'server (medians)':<18}{'req/s':>10}{'spread':>16}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'errors':>8}{'cpu ms/req':>12}{'bg µs/req':>11}{'busiest worker':>16}")
    for name in runs:
        rps = [x["rps"] for x in rounds[name]]
        busiest = [max(x["split"]) / sum(x["split"]) for x in rounds[name] if x["split"]]
        print(f"{name:<18}{_median(rps):>10.0f}{f'{min(rps):.0f}–{max(rps):.0f}':>16}"
              f"{_median([x['p50_ms'] for x in rounds[name]]):>9.2f}"
              f"{_median([x['p99_ms'] for x in rounds[name]]):>9.2f}"
              f"{sum(x['errors'] for x in rounds[name]):>8}"
              f"{_median([x['cpu_ms'] for x in rounds[name]]):>12.3f}"
              f"{_median([x['background_us'] for x in rounds[name]]):>11.1f}"
              f"{f'{_median(busiest):.0%} of conns' if busiest else '':>16}")
    if raw_rows is not None:
        print(f"{'onnxruntime 1k':<18}{raw_rows / 1000:>10.0f}   (batches/s in-process: "
              f"{raw_rows:,.0f} rows/s)")
    print()
    print(f"{'ratio (median of paired rounds)':<50}{'value':>8}{'spread':>14}  target")
    for label, values, target in rows:
        print(f"{label:<50}{_median(values):>8.2f}{f'{min(values):.2f}–{max(values):.2f}':>14}"
              f"  {target}")
    (OUT / "serving.json").write_text(json.dumps(
        {"rounds": rounds, "raw_rows_per_s": raw_rows,
         "ratios": {r[0]: {"median": _median(r[1]), "min": min(r[1]), "max": max(r[1])}
                    for r in rows}}, indent=2))


def onnxruntime_rows(batch_records: list[dict], duration: int) -> float:
    """Rows/s of onnxruntime run in-process on batches of ``batch_records`` (default session)."""
    import onnxruntime as ort

    from loopline.model.feeds import from_records

    sess = ort.InferenceSession(str(ROOT / "models/model.onnx"), providers=["CPUExecutionProvider"])
    numeric = [i.name for i in sess.get_inputs() if i.type != "tensor(string)"]
    categorical = [i.name for i in sess.get_inputs() if i.type == "tensor(string)"]
    f = from_records(batch_records, numeric, categorical)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < duration:
        sess.run(None, f)
        n += 1
    return n * len(batch_records) / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
