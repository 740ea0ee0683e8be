"""``loopline simulate --scenario canary``: two canary rollouts judged on live traffic.

In a sandbox (:mod:`loopline.simulate.sandbox`) whose ``deploy`` plan is :data:`PLAN` (a
canary of two steps), the first model is trained, registered and promoted; the service
starts. Then two candidates are promoted, each starting a rollout the service splits:

1. a **good** candidate (the same pipeline's model registered again: as good as prod);
2. a **faulty** one (trained on an extract whose labels are shuffled; its gate fails and it
   is promoted with force, as in the loop scenario).

Each step of the simulation sends ``records_per_step`` records of the held-back rows (no
drift) in requests of :data:`BATCH` records, posts the labels of the records sent
``label_delay`` steps earlier, and runs the monitor with ``--act``: the judge
(:mod:`loopline.monitoring.judge`) advances, completes or aborts the rollout and the service
reloads. The good candidate is expected to complete, the faulty one to be aborted before it
reaches the next step. The timeline records each step's share, the candidate's records and
labels in the step, and the decision with its reasons; each decision also records the time
from the last label it used to the decision.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loopline.core.errors import LooplineError
from loopline.simulate.sandbox import faulty_model, first_version, make_sandbox, same_model
from loopline.simulate.service import Service, wait_logged
from loopline.simulate.stream import Stream, records_of

PLAN = {"strategy": "canary", "steps": [10, 50], "min_records": 100, "min_labels": 100,
        "criteria": {"margin": 0.1, "confidence": 0.95, "max_error_rate": 0.01,
                     "p99_ms": None}}
BATCH = 5  # records per request: the split routes whole requests
WEBHOOK_ENV = "LOOPLINE_SIMULATE_WEBHOOK"


def simulate_canary(root: Path, *, seed: int, workdir: Path, quick: bool = False,
                    on_step: Callable[[dict], None] | None = None,
                    on_phase: Callable[[str], None] | None = None) -> dict:
    """Run the canary scenario; its document (timeline, decisions, registry history)."""
    from loopline.config.params import load_params
    from loopline.registry import actions as registry

    phase = on_phase or (lambda _msg: None)
    started = time.time()
    params = load_params(root)
    phase(f"making the sandbox in {workdir}")
    pool = make_sandbox(root, params, workdir, seed=seed, quick=quick, extra={"deploy": PLAN})
    work = workdir
    phase("training, registering and promoting the first model")
    params = load_params(work)
    first = first_version(work)
    token_env = params.serve.admin_token_env
    os.environ[token_env] = os.environ.get(token_env) or secrets.token_hex(16)
    service = Service(work, token_env)
    phase("starting the service")
    service.start()
    run = _Run(work, params, Stream(pool, params, {}, None, seed), service, started)
    rollouts = []
    try:
        phase("a good candidate: the same model registered again, promoted as a canary")
        good = same_model(work, "A candidate as good as prod (the same pipeline's model)")
        registry.promote(good, "prod", root=work)
        rollouts.append(run.rollout(good, "good", on_step))
        phase("a faulty candidate: trained on shuffled labels, forced past its gate")
        faulty = faulty_model(work, load_params(work), seed)
        rollouts.append(run.rollout(faulty, "faulty", on_step))
    finally:
        run.close()
        service.stop()
    history = registry.history(work)
    return {"scenario": "canary", "seed": seed, "sandbox": str(work),
            "seconds": round(time.time() - started, 1), "first_version": first["version"],
            "plan": PLAN, "config": params.simulate.model_dump(), "rollouts": rollouts,
            "steps": run.timeline,
            "registry": [{"event": e["event"], "version": e["version"], "stage": e.get("stage"),
                          "forced": e["forced"], "reason": e.get("reason")}
                         for e in reversed(history)]}


class _Run:
    """The traffic, the delayed labels and the monitor, step after step."""

    def __init__(self, work: Path, params: Any, stream: Stream, service: Service,
                 started: float) -> None:
        import httpx

        self.work, self.params, self.stream, self.service = work, params, stream, service
        self.started = started
        self.client = httpx.Client(base_url=service.url, timeout=60.0)
        self.pending: list[tuple[int, list[dict]]] = []
        self.requests = self.labels = 0
        self.k = 0
        self.timeline: list[dict] = []
        self.log_path = work / params.serve.log.path
        self.cfg = params.monitor.model_copy(update={
            "windows": 1, "alerts": params.monitor.alerts.model_copy(
                update={"webhook_env": WEBHOOK_ENV})})

    def close(self) -> None:
        self.client.close()

    def rollout(self, version: str, kind: str, on_step: Callable[[dict], None] | None) -> dict:
        """Steps until the rollout of ``version`` ends (at most ``simulate.steps``)."""
        self.service.reload()
        out: dict[str, Any] = {"version": version, "kind": kind, "outcome": None,
                               "decisions": []}
        for _ in range(self.params.simulate.steps):
            entry = self.step()
            entry["candidate"] = version
            self.timeline.append(entry)
            if on_step:
                on_step(entry)
            if entry["decision"] in ("advance", "complete", "abort"):
                out["decisions"].append({k: entry[k] for k in (
                    "step", "decision", "rollout_step", "share", "reasons", "label_to_decision_s",
                    "candidate_records", "candidate_labels")})
            if entry["decision"] in ("complete", "abort"):
                out["outcome"] = entry["decision"]
                break
        else:  # undecided within simulate.steps: end it, so the next rollout can start
            from loopline.registry import rollout

            rollout.abort(self.work, reason=f"simulation: undecided after "
                                            f"{self.params.simulate.steps} steps")
            self.service.reload()
            out["outcome"] = "undecided (aborted)"
        return out

    def step(self) -> dict:
        from loopline.monitoring.check import check

        self.k += 1
        sim = self.params.simulate
        frame, labels = self.stream.draw(0)  # step 0: no new regime
        records = records_of(frame, self.params)
        served: dict[str, int] = {}
        sent: list[dict] = []
        for i in range(0, len(records), BATCH):
            res = self.client.post("/predict", json={"records": records[i:i + BATCH]})
            if res.status_code != 200:
                raise LooplineError(f"step {self.k}: /predict answered {res.status_code}: "
                                    f"{res.text[:300]}")
            body = res.json()
            served[body["model_version"]] = served.get(body["model_version"], 0) + len(
                body["predictions"])
            sent += [{"request_id": body["request_id"], "index": j, "label": str(labels[i + j])}
                     for j in range(len(body["predictions"]))]
            self.requests += 1
        self.pending.append((self.k, sent))
        due = [lab for s, labs in self.pending if s <= self.k - sim.label_delay for lab in labs]
        self.pending = [(s, labs) for s, labs in self.pending if s > self.k - sim.label_delay]
        for i in range(0, len(due), 1000):
            res = self.client.post("/feedback", json={"labels": due[i:i + 1000]})
            if res.status_code != 200:
                raise LooplineError(f"step {self.k}: /feedback answered {res.status_code}")
        self.labels += len(due)
        wait_logged(self.log_path, self.started, self.requests, self.labels)
        end = time.time()
        doc = check(self.work, self.params, self.cfg, log_path=self.log_path, until=end + 1e-3,
                    size=end + 1e-3 - self.started, html=False, act=True,
                    service_url=self.service.url)
        decided = time.time()
        j = doc.get("rollout") or {}
        cand = j.get("candidate") or {}
        champ = j.get("champion_records") or {}
        acted = next((a for a in doc.get("actions") or [] if a["action"] == "rollout"), None)
        decision = j.get("decision", "none")
        if decision != "wait" and (acted is None or not acted.get("done")):
            decision = "none" if acted is None else f"{decision} (not done)"
        last = j.get("last_label_at")
        return {"step": self.k, "served": served, "rollout_step": j.get("step"),
                "share": j.get("share"), "candidate_records": cand.get("records"),
                "candidate_labels": cand.get("labels"),
                "candidate_accuracy": cand.get("accuracy"),
                "champion_accuracy": champ.get("accuracy"), "decision": decision,
                "reasons": j.get("reasons") or [],
                "label_to_decision_s": round(decided - last, 3) if last else None}
