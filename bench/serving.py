"""Serving throughput and latency, side by side in one run, same model, 127.0.0.1.

    python bench/serving.py [--duration 10] [--skip-mlflow]

Servers, started one at a time with 2 workers each and loaded with wrk (-t1 -c8, one
record per request; Debian's wrk, installed by `make bench`):

- minimal:   the same ONNX model in the smallest BentoML service (bench/minimal_service.py),
             no validation, no logging;
- loopline:  `loopline serve` of the model: input contract, inference log, metrics;
- no-log:    the same with the inference log switched off (the logging cost);
- canary:    the same with a rollout routing 50% of requests to a candidate (a second
             copy of the model, under another version), each request naming a caller key;
- mlflow:    `mlflow models serve` of the same scikit-learn pipeline (in its own venv,
             bench/out/mlflow-venv, made on first use; --skip-mlflow to leave it out).

Then batches of 1,000 rows, as columns to /predict_batch and as records to /predict
(wrk -c8), against onnxruntime run in-process on the same rows. Needs a model in models/ (`make run` makes one).
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
        self.out = open(OUT / f"{name}.log", "wb")
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


def wrk(url: str, body: bytes, *, connections: int, duration: int) -> dict:
    """Requests/s and latency percentiles from one wrk run (plus a 2 s warm-up)."""
    body_file = OUT / "body.json"
    body_file.write_bytes(body)
    script = OUT / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
        'done = function(summary, latency, requests)\n'
        '  io.write(string.format("JSON {\\"p50\\": %d, \\"p99\\": %d, \\"errors\\": %d, '
        '\\"non2xx\\": %d}\\n", latency:percentile(50), latency:percentile(99), '
        'summary.errors.status + summary.errors.connect + summary.errors.read + '
        'summary.errors.write + summary.errors.timeout, summary.errors.status))\nend\n')
    base = ["wrk", "-t1", f"-c{connections}", "-s", str(script), url]
    subprocess.run([*base[:3], "-d2s", *base[3:]], capture_output=True, check=True)
    out = subprocess.run([*base[:3], f"-d{duration}s", *base[3:]], capture_output=True,
                         text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    extra = json.loads(out[out.index("JSON ") + 5:].splitlines()[0])
    return {"rps": rps, "p50_ms": extra["p50"] / 1000, "p99_ms": extra["p99"] / 1000,
            "errors": extra["errors"]}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--skip-mlflow", action="store_true")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk; `make bench` does it)")
    if not (ROOT / "models/model.onnx").is_file():
        raise SystemExit("no model in models/: run `make run` first")
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="loopline-bench-"))
    env = {**os.environ, "BENTOML_HOME": str(tmp / "bentoml"), "BENTOML_DO_NOT_TRACK": "True",
           "OMP_WAIT_POLICY": "PASSIVE"}
    one = json.dumps({"records": sample_records(1)}).encode()
    batch_records = sample_records(1000)
    batch = json.dumps({"records": batch_records}).encode()
    columns = {k: [r.get(k) for r in batch_records] for k in batch_records[0]}
    for rec in batch_records:
        columns.update({k: [r.get(k) for r in batch_records] for k in rec if k not in columns})
    batch_columns = json.dumps({"columns": columns}).encode()
    results: dict[str, dict] = {}

    def run(name: str, argv: list[str], path: str, body: bytes, penv: dict, cwd: Path) -> None:
        port = free_port()
        argv = [a.replace("{port}", str(port)) for a in argv]
        url = f"http://127.0.0.1:{port}"
        proc = Proc(name, argv, url, penv, cwd, (path, body)).wait()
        try:
            results[name] = wrk(url + path, body, connections=8, duration=args.duration)
            if name == "loopline":
                # 8 connections here too: with fewer, the kernel may hand them all to
                # one worker (both accept on one socket), leaving the other idle
                results["batch columns"] = wrk(url + "/predict_batch", batch_columns,
                                               connections=8, duration=args.duration)
                results["batch records"] = wrk(url + path, batch, connections=8,
                                               duration=args.duration)
        finally:
            proc.stop()
        print(f"  {name:<9} {results[name]['rps']:8.0f} req/s  p99 {results[name]['p99_ms']:.2f} ms",
              flush=True)

    # loopline's own spec, from `loopline serve --dry-run`, with the log on and off
    specs = {}
    for name, enabled in (("loopline", True), ("no-log", False), ("canary", True)):
        spec = json.loads(subprocess.run(
            [str(BIN / "loopline"), "serve", "--dry-run", "--port", "1"], cwd=ROOT, env=env,
            capture_output=True, text=True, check=True).stdout)
        spec["log"].update(enabled=enabled, path=str(tmp / f"{name}.sqlite"))
        if name == "canary":  # the split's hot path: a keyed hash and a compare per request
            spec["model"]["rollout"] = {**spec["model"], "version": "candidate", "share": 50.0,
                                        "tag": "bench#canary#1"}
        specs[name] = tmp / f"{name}.json"
        specs[name].write_text(json.dumps(spec))
    serve = [str(BIN / "bentoml"), "serve", "loopline.serving.service:LooplineService",
             "--host", "127.0.0.1", "--port", "{port}"]
    print(f"single record, wrk -t1 -c8 -d{args.duration}s, 2 workers each:", flush=True)
    run("minimal", [str(BIN / "bentoml"), "serve", "minimal_service:Minimal", "--host", "127.0.0.1",
                    "--port", "{port}"], "/predict", one,
        {**env, "MINIMAL_ONNX": str(ROOT / "models/model.onnx"), "MINIMAL_WORKERS": "2"},
        ROOT / "bench")
    run("loopline", serve, "/predict", one, {**env, "LOOPLINE_SERVE_SPEC": str(specs["loopline"])}, tmp)
    run("no-log", serve, "/predict", one, {**env, "LOOPLINE_SERVE_SPEC": str(specs["no-log"])}, tmp)
    keyed = json.dumps({"records": sample_records(1), "key": "customer-42"}).encode()
    run("canary", serve, "/predict", keyed, {**env, "LOOPLINE_SERVE_SPEC": str(specs["canary"])},
        tmp)
    if not args.skip_mlflow:
        py = ensure_mlflow()
        save_mlflow_model(py, tmp / "mlflow-model")
        mlflow_one = json.dumps({"dataframe_records": sample_records(1)}).encode()
        run("mlflow", [str(py.parent / "mlflow"), "models", "serve", "-m", str(tmp / "mlflow-model"),
                       "--env-manager", "local", "--workers", "2", "--host", "127.0.0.1",
                       "--port", "{port}"], "/invocations", mlflow_one,
            {**env, "PYTHONPATH": str(ROOT / "src"),
             "PATH": f"{py.parent}{os.pathsep}{os.environ.get('PATH', '')}"}, tmp)

    # in-process onnxruntime on the same 1,000 rows (default session: all cores)
    import onnxruntime as ort

    from loopline.model.feeds import from_records

    sess = ort.InferenceSession(str(ROOT / "models/model.onnx"), providers=["CPUExecutionProvider"])
    numeric = [i.name for i in sess.get_inputs() if i.type != "tensor(string)"]
    categorical = [i.name for i in sess.get_inputs() if i.type == "tensor(string)"]
    f = from_records(batch_records, numeric, categorical)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.duration:
        sess.run(None, f)
        n += 1
    raw_rows = n * 1000 / (time.perf_counter() - start)
    served_rows = results["batch columns"]["rps"] * 1000

    shutil.rmtree(tmp, ignore_errors=True)
    m, ll, nl = results["minimal"], results["loopline"], results["no-log"]
    rows = [
        ("loopline vs minimal BentoML, req/s", ll["rps"] / m["rps"], "≥ 0.8"),
        ("loopline vs minimal BentoML, p99", ll["p99_ms"] / m["p99_ms"], "≤ 1.2"),
        ("/predict_batch rows/s vs in-process onnxruntime", served_rows / raw_rows, "≥ 0.5"),
        ("/predict (1,000 records) rows/s vs onnxruntime",
         results["batch records"]["rps"] * 1000 / raw_rows, "(records)"),
        ("logging on vs off, req/s", ll["rps"] / nl["rps"], "≥ 0.9"),
        ("canary split (50%, keyed) vs plain, req/s", results["canary"]["rps"] / ll["rps"],
         "≥ 0.9"),
    ]
    if "mlflow" in results:
        rows.insert(1, ("loopline vs mlflow models serve, req/s", ll["rps"] / results["mlflow"]["rps"], "≥ 8"))
    print()
    print(f"{'server':<16}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name, r in results.items():
        print(f"{name:<16}{r['rps']:>10.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['errors']:>8}")
    print(f"{'onnxruntime 1k':<16}{raw_rows / 1000:>10.0f}   (batches/s in-process; "
          f"{raw_rows:,.0f} rows/s vs served {served_rows:,.0f} rows/s)")
    print()
    print(f"{'ratio':<50}{'value':>8}  target")
    for label, value, target in rows:
        print(f"{label:<50}{value:>8.2f}  {target}")
    (OUT / "serving.json").write_text(json.dumps({"results": results, "raw_rows_per_s": raw_rows,
                                                  "ratios": {r[0]: r[1] for r in rows}}, indent=2))


if __name__ == "__main__":
    main()
