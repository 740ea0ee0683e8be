"""``loopline simulate``: the whole loop, driven against a live local service.

The simulation works on a sandbox: a copy of the instance's tracked files in its own Git
and DVC repository (``.loopline/simulate/seed-N`` by default), so the instance itself is never
changed. In the sandbox a seeded share of the data (``simulate.holdout``) is held back as
future traffic, and the pipeline trains, registers and promotes the first version on the
rest. Then ``loopline serve`` starts on 127.0.0.1 and, step by step:

1. the step's records are drawn from the held-back rows; a growing share of them comes from
   a new regime (``simulate.shift`` multiplies some columns; ``simulate.concept`` sets their
   labels), and they are sent to ``/predict`` in ``requests_per_step`` requests;
2. the labels of the records sent ``label_delay`` steps earlier go to ``/feedback``;
3. the monitor judges the last ``window_steps`` steps (``window_steps - 1`` steps of warm-up
   traffic come first, so every judged window is full) and acts (``loopline monitor --act``):
   alerts, imputation records, retraining on AMBER (append the new labelled records, run the
   pipeline and its gate, register, promote, reload the service), rollback on RED;
4. ``bad_model_after`` steps after a retrained model went live, a faulty extract (labels
   shuffled) trains a model on a branch; its gate fails, and it is registered and promoted to
   prod with force, as an operator overriding the gate would; the service reloads to it. The
   monitor is expected to catch it (RED) and roll back to the last version that met spec.

The stream, the models and so every decision depend only on the seed and the
configuration; wall-clock times and latencies do not enter any decision. The timeline goes to
``reports/simulate.json`` and an HTML report with plots to ``reports/simulate.html``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopline.core.errors import LooplineError

MARKER = ".loopline-simulate"
BRANCH = "faulty-extract"
WEBHOOK_ENV = "LOOPLINE_SIMULATE_WEBHOOK"  # alerts of the simulation go here, never to prod's
QUICK = {"search": {"n_iter": 3, "cv": 3, "n_jobs": 1},  # --quick: trainings take seconds
         "evaluate": {"permutation": {"n_repeats": 2}}}


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class Step:
    """What happened in one step of the simulation."""

    step: int
    drift: float
    records: int
    labels_sent: int
    served: list[str] = field(default_factory=list)
    status: str = "NO DATA"
    reasons: list[str] = field(default_factory=list)
    roc_auc: float | None = None
    accuracy: float | None = None
    labels: int = 0
    drift_share: float | None = None
    drift_scores: dict[str, float] = field(default_factory=dict)
    drifted: list[str] = field(default_factory=list)
    missing_rate: float | None = None
    status_by_version: dict[str, str] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)


# ----------------------------------------------------------------------- stream


class Stream:
    """Seeded traffic from the held-back rows, drifting as ``simulate`` describes."""

    def __init__(self, pool: Any, params: Any, shift: dict[str, float], concept: Any,
                 seed: int) -> None:
        import numpy as np

        self.pool = pool.reset_index(drop=True)
        self.params = params
        self.cfg = params.simulate
        self.shift = shift
        self.concept = concept
        self.rng = np.random.default_rng(seed)

    def share(self, step: int) -> float:
        d = self.cfg.drift
        if step < d.start:
            return 0.0
        return round(min(d.max, d.step * (step - d.start + 1)), 6)

    def draw(self, step: int) -> tuple[Any, Any]:
        """(records as a frame of feature columns, labels) of a step."""
        import numpy as np

        cfg, data = self.cfg, self.params.data
        n = cfg.records_per_step
        rows = self.pool.iloc[self.rng.integers(0, len(self.pool), n)].reset_index(drop=True)
        new = self.rng.random(n) < self.share(step)
        flip = self.rng.random(n) < cfg.label_noise
        schema = data.schema_.columns
        for col, factor in self.shift.items():
            scaled = rows.loc[new, col].astype(float) * factor
            spec = schema[col]
            if spec.max is not None:
                scaled = scaled.clip(upper=spec.max)
            if spec.type == "integer":
                scaled = scaled.round()
            rows[col] = rows[col].astype(float)
            rows.loc[new, col] = scaled
        labels = rows[data.target].astype(str).to_numpy(copy=True)
        classes = [str(c) for c in schema[data.target].categories or []]
        positive = data.positive_class
        negative = next(c for c in classes if c != positive)
        if self.concept is not None:
            col, above = self.concept
            regime = np.where(rows[col].to_numpy(dtype=float) > above, positive, negative)
            labels = np.where(new, regime, labels)
            labels = np.where(new & flip, np.where(labels == positive, negative, positive), labels)
        numeric, categorical = data.feature_columns(self.params.features.drop)
        return rows[numeric + categorical], labels


def records_of(frame: Any, params: Any) -> list[dict]:
    """JSON records as the service's contract takes them (ints for integer columns, null for NaN)."""
    import math

    schema = params.data.schema_.columns
    ints = {c for c in frame.columns if schema[c].type == "integer"}
    out = []
    for row in frame.to_dict(orient="records"):
        rec = {}
        for k, v in row.items():
            if v is None or (isinstance(v, float) and math.isnan(v)):
                rec[k] = None
            elif k in ints:
                rec[k] = int(v)
            elif isinstance(v, float | int) and not isinstance(v, bool):
                rec[k] = float(v)
            else:
                rec[k] = str(v)
        out.append(rec)
    return out


# ---------------------------------------------------------------------- sandbox


def _run(cmd: list[str], cwd: Path, what: str, env: dict | None = None,
         ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if res.returncode not in ok:
        tail = (res.stderr or res.stdout).strip().splitlines()[-5:]
        raise LooplineError(f"{what} failed (exit {res.returncode}): " + " | ".join(tail))
    return res


def _loopline(*args: str, cwd: Path, what: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "loopline", *args], cwd, what, ok=ok)


def _git(cwd: Path, *args: str) -> str:
    return _run(["git", *args], cwd, f"git {args[0]}").stdout.strip()


def _read_table(path: Path, fmt: str) -> Any:
    import pandas as pd

    if fmt == "parquet" or (fmt == "auto" and path.suffix == ".parquet"):
        return pd.read_parquet(path)
    return pd.read_csv(path)


def _write_table(df: Any, path: Path, fmt: str) -> None:
    if fmt == "parquet" or (fmt == "auto" and path.suffix == ".parquet"):
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)


def make_sandbox(root: Path, params: Any, workdir: Path, *, seed: int, quick: bool) -> Any:
    """Copy the instance's tracked files into ``workdir``, hold back the traffic; the pool."""
    import numpy as np

    data = params.data
    if data.id_column or data.order_column:
        raise LooplineError("loopline simulate appends the monitored records to the data, which "
                            "needs data without data.id_column/order_column")
    if workdir.exists():
        if any(workdir.iterdir()) and not (workdir / MARKER).is_file():
            raise LooplineError(f"{workdir} exists and is not a simulation sandbox: choose another "
                                "--workdir")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / MARKER).write_text("made by loopline simulate; removed by the next run\n")
    tracked = _git(root, "ls-files", "-z").split("\0")
    for rel in filter(None, tracked):
        src = root / rel
        if rel.startswith(("reports/", "logs/")) or not src.is_file():
            continue  # the sandbox's reports are its own
        dest = workdir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
    source = root / data.source
    if not source.is_file():
        raise LooplineError(f"data.source {data.source} is missing: `loopline pull` it first")
    df = _read_table(source, data.format)
    df = df[df[data.target].notna()].reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(df))
    cut = int(round(len(df) * (1 - params.simulate.holdout)))
    base, pool = df.iloc[order[:cut]], df.iloc[order[cut:]]
    (workdir / f"{data.source}.dvc").unlink(missing_ok=True)  # the sandbox's Git holds its data
    (workdir / data.source).parent.mkdir(parents=True, exist_ok=True)
    _write_table(base.reset_index(drop=True), workdir / data.source, data.format)
    overrides = dict(params.simulate.overrides)
    if quick:
        overrides = _merge(overrides, QUICK)
    if overrides:  # values in conf/config.yaml itself win over its groups (`_self_` comes last)
        import yaml

        conf = workdir / "conf" / "config.yaml"
        conf.write_text(conf.read_text(encoding="utf-8") + "\n# loopline simulate: the sandbox's "
                        "overrides\n" + yaml.safe_dump(overrides, sort_keys=False), encoding="utf-8")
    ignore = workdir / ".gitignore"
    ignore.write_text((ignore.read_text() if ignore.is_file() else "")
                      + f"\n/{MARKER}\n/logs/\n/.loopline/\n/reports/monitor*\n/reports/alerts.jsonl\n")
    _run(["git", "init", "-q", "-b", "main"], workdir, "git init")
    _git(workdir, "config", "user.name", "loopline simulate")
    _git(workdir, "config", "user.email", "simulate@loopline.invalid")
    if not (workdir / ".dvc").is_dir():
        _run([sys.executable, "-m", "dvc", "init", "-q"], workdir, "dvc init")
    _run([sys.executable, "-m", "dvc", "config", "--local", "core.analytics", "false"], workdir,
         "dvc config")
    _git(workdir, "add", "-A")
    _git(workdir, "commit", "-q", "-m", f"Simulation sandbox (seed {seed}): "
         f"{len(pool)} of {len(df)} rows held back as future traffic")
    return pool


def first_version(work: Path) -> dict:
    """Train, register and promote the first version (its gate must pass)."""
    res = _loopline("run", "--json", cwd=work, what="the first `loopline run`", ok=(0, 1))
    doc = json.loads(res.stdout or "{}")
    if not doc.get("ok"):
        why = doc.get("error") or ", ".join((doc.get("gate") or {}).get("failed", [])) or res.stderr
        raise LooplineError(f"the first model of the simulation did not pass its gate: {why}")
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "First model")
    reg = json.loads(_loopline("register", "--json", cwd=work, what="register").stdout)
    _loopline("promote", reg["version"], "--to", "prod", cwd=work, what="promote")
    return reg


def faulty_model(work: Path, params: Any, seed: int) -> str:
    """Train on a faulty extract (labels shuffled) on a branch; register and force it to prod."""
    import numpy as np

    data = params.data
    _git(work, "checkout", "-q", "-b", BRANCH)
    source = work / data.source
    df = _read_table(source, data.format)
    df[data.target] = np.random.default_rng(seed + 1).permutation(df[data.target].to_numpy())
    _write_table(df, source, data.format)
    _git(work, "commit", "-q", "-am", "Faulty extract: the labels are shuffled")
    _loopline("run", "--json", cwd=work, what="`loopline run` on the faulty extract", ok=(0, 1))
    _git(work, "add", "-u")
    _git(work, "commit", "-q", "-m", "Train on the faulty extract")
    reason = "simulated: an operator overrides the failed gate of a faulty extract's model"
    reg = json.loads(_loopline("register", "--force", "--reason", reason, "--json", cwd=work,
                               what="register --force").stdout)
    _loopline("promote", reg["version"], "--to", "prod", "--force", "--reason", reason, cwd=work,
              what="promote --force")
    _git(work, "checkout", "-q", "main")
    _run([sys.executable, "-m", "dvc", "checkout", "-q"], work, "dvc checkout")
    return reg["version"]


# ---------------------------------------------------------------------- service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """``loopline serve prod`` of the sandbox on 127.0.0.1, one worker."""

    def __init__(self, work: Path, token_env: str) -> None:
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token_env = token_env
        self.proc: subprocess.Popen | None = None
        self.log = work / ".loopline" / "simulate-serve.log"

    def start(self, timeout: float = 180.0) -> None:
        import httpx

        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True"}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "loopline", "serve", "prod", "--port", str(self.port),
                 "--workers", "1"], cwd=self.work, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
                raise LooplineError("the simulated service exited: " + " | ".join(tail))
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise LooplineError(f"the simulated service did not become ready in {timeout:.0f} s")

    def stop(self) -> None:
        import signal

        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _wait_logged(log: Path, since: float, requests: int, labels: int, timeout: float = 30.0) -> None:
    """Until the service's log holds the step's requests and labels (it writes in the background)."""
    from loopline.serving.inference_log import connect

    deadline = time.monotonic() + timeout
    while True:
        conn = connect(log, readonly=True)
        try:
            got = conn.execute("SELECT COUNT(*) FROM requests WHERE ts >= ?", (since,)).fetchone()[0]
            fb = conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
        finally:
            conn.close()
        if got >= requests and fb >= labels:
            return
        if time.monotonic() > deadline:
            raise LooplineError(f"the inference log holds {got} of {requests} requests and {fb} of "
                                f"{labels} labels after {timeout:.0f} s")
        time.sleep(0.1)


# -------------------------------------------------------------------------- run


def _auto_drift(work: Path, params: Any, pool: Any) -> tuple[dict[str, float], tuple[str, float] | None]:
    """``simulate.shift`` and ``concept``, or the default choice (see :class:`SimulateConfig`)."""
    sim = params.simulate
    concept = (sim.concept.column, sim.concept.above) if sim.concept else None
    if sim.shift or concept:
        return dict(sim.shift), concept
    numeric, _ = params.data.feature_columns(params.features.drop)
    imp_path = work / params.paths.reports / "importance.json"
    ranked = [f["feature"] for f in json.loads(imp_path.read_text())["features"]] \
        if imp_path.is_file() else []
    top = [c for c in ranked if c in numeric][:3] or numeric[:3]
    shift = dict.fromkeys(top, 1.3)
    col = top[0]
    return shift, (col, float((pool[col].astype(float) * 1.3).quantile(0.7)))


def simulate(root: Path, *, seed: int, workdir: Path, quick: bool = False,
             on_step: Callable[[Step], None] | None = None,
             on_phase: Callable[[str], None] | None = None) -> dict:
    """Run the simulation; its document (timeline, events, registry history)."""
    from loopline.config.params import load_params
    from loopline.monitoring.check import check
    from loopline.registry import actions as registry

    phase = on_phase or (lambda _msg: None)
    started = time.time()
    params = load_params(root)
    sim = params.simulate
    phase(f"making the sandbox in {workdir}")
    pool = make_sandbox(root, params, workdir, seed=seed, quick=quick)
    work = workdir
    phase("training, registering and promoting the first model")
    params = load_params(work)
    first = first_version(work)
    shift, concept = _auto_drift(work, params, pool)
    stream = Stream(pool, params, shift, concept, seed)
    token_env = params.serve.admin_token_env
    os.environ[token_env] = os.environ.get(token_env) or secrets.token_hex(16)
    service = Service(work, token_env)
    phase("starting the service")
    service.start()
    log_path = work / params.serve.log.path
    cfg = params.monitor.model_copy(update={"windows": 1, "alerts": params.monitor.alerts.model_copy(
        update={"webhook_env": WEBHOOK_ENV})})
    steps: list[Step] = []
    bounds: dict[int, tuple[float, float]] = {}
    pending: list[tuple[int, list[dict]]] = []  # (step, feedback labels) waiting for their delay
    retrained_at: int | None = None
    faulty: str | None = None
    requests_total = labels_total = 0
    try:
        import httpx

        client = httpx.Client(base_url=service.url, timeout=60.0)
        for k in range(2 - sim.window_steps, sim.steps + 1):  # warm-up first: full windows
            if faulty is None and retrained_at is not None and k == retrained_at + sim.bad_model_after:
                phase(f"step {k}: a faulty extract trains a model; it is forced into prod")
                faulty = faulty_model(work, params, seed)
                _reload(client, token_env)
                forced = {"event": "forced", "version": faulty,
                          "note": "faulty extract (labels shuffled); gate failed; promoted with force"}
            else:
                forced = None
            start = time.time()
            frame, labels = stream.draw(k)
            records = records_of(frame, params)
            size = -(-len(records) // sim.requests_per_step)
            served: set[str] = set()
            sent: list[dict] = []
            for i in range(0, len(records), size):
                res = client.post("/predict", json={"records": records[i:i + size]})
                if res.status_code != 200:
                    raise LooplineError(f"step {k}: /predict answered {res.status_code}: "
                                        f"{res.text[:300]}")
                body = res.json()
                served.add(body["model_version"])
                sent += [{"request_id": body["request_id"], "index": j, "label": str(labels[i + j])}
                         for j in range(len(body["predictions"]))]
            requests_total += -(-len(records) // size)
            pending.append((k, sent))
            due = [lab for s, labs in pending if s <= k - sim.label_delay for lab in labs]
            pending = [(s, labs) for s, labs in pending if s > k - sim.label_delay]
            for i in range(0, len(due), 1000):
                res = client.post("/feedback", json={"labels": due[i:i + 1000]})
                if res.status_code != 200:
                    raise LooplineError(f"step {k}: /feedback answered {res.status_code}: "
                                        f"{res.text[:300]}")
            labels_total += len(due)
            _wait_logged(log_path, started, requests_total, labels_total)
            end = time.time()
            bounds[k] = (start, end)
            if k < 1:  # warm-up traffic: it fills the first window, it is not judged
                continue
            window_start = bounds[k - sim.window_steps + 1][0]
            params = load_params(work)
            doc = check(work, params, cfg, log_path=log_path, until=end + 1e-3,
                        size=end + 1e-3 - window_start, html=False, act=True,
                        service_url=service.url)
            step = _step_of(k, stream.share(k), len(records), len(due), sorted(served), doc)
            if forced:
                step.events.insert(0, forced)
            for a in doc.get("actions") or []:
                if a["action"] == "retrain" and a.get("done"):
                    retrained_at = retrained_at or k
                    step.events.append({"event": "retrained", "version": a["version"],
                                        "note": f"{a['records']} labelled records appended; gate "
                                                "passed; promoted to prod; service reloaded"})
                elif a["action"] == "rollback" and a.get("done"):
                    step.events.append({"event": "rolled back", "version": a["to"],
                                        "note": f"{a['from']} failed live ({a['reason']})"})
                elif a["action"] == "retrain" and a.get("why") and "not promoted" in a["why"]:
                    step.events.append({"event": "retrain failed", "version": None, "note": a["why"]})
            steps.append(step)
            if on_step:
                on_step(step)
        client.close()
        phase("writing the Evidently report of the last window")
        last = sim.steps
        check(work, params, cfg, log_path=log_path, until=bounds[last][1] + 1e-3,
              size=bounds[last][1] + 1e-3 - bounds[last - sim.window_steps + 1][0],
              html=True, act=False)
    finally:
        service.stop()
    history = registry.history(work, "prod")
    return {"seed": seed, "sandbox": str(work), "seconds": round(time.time() - started, 1),
            "first_version": first["version"], "faulty_version": faulty,
            "shift": shift, "concept": {"column": concept[0], "above": concept[1]} if concept else None,
            "config": sim.model_dump(), "steps": [s.__dict__ for s in steps],
            "statuses": [s.status for s in steps],
            "events": [{"step": s.step, **e} for s in steps for e in s.events],
            "registry": [{"event": e["event"], "version": e["version"], "forced": e["forced"]}
                         for e in reversed(history)]}


def _reload(client: Any, token_env: str) -> None:
    res = client.post("/admin/reload", json={"ref": "prod"},
                      headers={"Authorization": f"Bearer {os.environ[token_env]}"}, timeout=120.0)
    if res.status_code != 200:
        raise LooplineError(f"/admin/reload answered {res.status_code}: {res.text[:300]}")


def drift_score(d: dict) -> float:
    """A column's drift on one scale for every method: 1.0 at its threshold, above = drifted."""
    import math

    if d["kind"] == "p-value":
        p = max(float(d["value"]), 1e-300)
        return round(math.log10(p) / math.log10(d["threshold"]), 4)
    return round(float(d["value"]) / d["threshold"], 4)


def _step_of(k: int, share: float, records: int, labels_sent: int, served: list[str],
             doc: dict) -> Step:
    w = next((w for w in reversed(doc["windows"]) if w["status"] != "NO DATA"), {})
    perf = w.get("performance") or {}
    drift = w.get("drift") or []
    miss = w.get("missing_rate") or {}
    return Step(step=k, drift=share, records=records, labels_sent=labels_sent, served=served,
                status=doc["status"], reasons=list(doc["reasons"]), roc_auc=perf.get("roc_auc"),
                accuracy=perf.get("accuracy"), labels=w.get("labels", 0),
                drift_share=w.get("drift_share"),
                drift_scores={d["column"]: drift_score(d) for d in drift},
                drifted=[d["column"] for d in drift if d.get("drifted")],
                missing_rate=max(miss.values()) if miss else None,
                status_by_version={v: s["status"] for v, s in
                                   (w.get("status_by_version") or {}).items()},
                events=[])
