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

This module drives the steps; the traffic is :mod:`loopline.simulate.stream`, the sandbox
(with the pipeline and registry calls) :mod:`loopline.simulate.sandbox`, the service
process :mod:`loopline.simulate.service`, the HTML report :mod:`loopline.simulate.report`.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from loopline.core.errors import LooplineError
from loopline.simulate.sandbox import faulty_model, first_version, make_sandbox
from loopline.simulate.service import Service, wait_logged
from loopline.simulate.stream import Stream, auto_drift, records_of

WEBHOOK_ENV = "LOOPLINE_SIMULATE_WEBHOOK"  # alerts of the simulation go here, never to prod's


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
    shift, concept = auto_drift(work, params, pool)
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
                service.reload()
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
            wait_logged(log_path, started, requests_total, labels_total)
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
