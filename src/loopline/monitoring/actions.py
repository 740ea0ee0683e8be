"""What ``loopline monitor --act`` does about a status, each step recorded in the audit log.

- **Missing-rate alarm** (a feature's missing rate graded AMBER or RED): the imputation policy
  of seed 000 applies. The served model carries its imputers (numeric mean, median or KNN;
  categorical most-frequent or a "missing" category, from ``conf/features``), so missing
  values are filled inside the model; the action records, per alarming feature, the policy
  and fill value the model applies (from ``reports/prepare.json``).
- **Rollback** (RED on the live performance of the version currently assigned to the stage,
  judged on that version's own labelled records): the stage is rolled back with
  :func:`loopline.registry.rollback` to the last earlier version that passed its gate (the
  reasons go to the audit log) and, given a service URL and its admin token, the running
  service reloads to it. A version already replaced is never rolled back again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from loopline.errors import LooplineError
from loopline.monitoring.alerts import audit


def latest_window(doc: dict) -> dict | None:
    return next((w for w in reversed(doc["windows"]) if w["status"] in ("GREEN", "AMBER", "RED")),
                None)


def imputation(root: Path, reports: str, window: dict, amber: float) -> list[dict]:
    """The imputation each alarming feature (missing rate above ``amber``) gets in the model."""
    if (window.get("grades") or {}).get("missing_rate") not in ("AMBER", "RED"):
        return []
    plan_path = root / reports / "prepare.json"
    plan = json.loads(plan_path.read_text()).get("imputation", {}) if plan_path.is_file() else {}
    out = []
    for col, rate in sorted((window.get("missing_rate") or {}).items(), key=lambda kv: -kv[1]):
        if rate <= amber or col not in plan:
            continue
        step = plan[col]
        out.append({"action": "imputation", "feature": col, "missing_rate": rate,
                    "strategy": step.get("strategy"), "fill": step.get("fill"),
                    "applied_by": "the model's own imputer (fitted in training)"})
    return out


def rollback(root: Path, stage: str, window: dict, *, service_url: str | None,
             token_env: str, push: str | None = None) -> list[dict]:
    """Roll ``stage`` back when its current version fails live performance (RED)."""
    from loopline import registry

    failing = {v: p for v, p in (window.get("performance_by_version") or {}).items()
               if p.get("status") == "RED"}
    if not failing:
        return []
    try:
        current = registry.which(stage, root)["version"]
    except LooplineError as err:  # nothing assigned (e.g. serving a local export)
        return [{"action": "rollback", "done": False, "stage": stage, "why": str(err)}]
    if current not in failing:
        return [{"action": "rollback", "done": False, "stage": stage,
                 "why": f"{', '.join(sorted(failing))} failed live, but {stage} is {current} now: "
                        "it was already replaced"}]
    perf = failing[current]
    reason = (f"live performance of {current} on {perf['labels']} labelled records: "
              + ", ".join(f"{k} {perf[k]:.3f}" for k in ("roc_auc", "accuracy", "f1")
                          if perf.get(k) is not None))
    try:  # a regular rollback (to a gate-passed version): its reason goes to the audit log
        res = registry.rollback(stage, root=root, push=push)
    except LooplineError as err:
        return [{"action": "rollback", "done": False, "stage": stage, "from": current,
                 "why": str(err)}]
    out: list[dict[str, Any]] = [{"action": "rollback", "done": True, "stage": stage,
                                  "from": current, "to": res.get("version"), "tag": res.get("tag"),
                                  "reason": reason[:400]}]
    if service_url:
        out.append(reload_service(service_url, stage, token_env))
    return out


def reload_service(url: str, stage: str, token_env: str) -> dict:
    import httpx

    token = os.environ.get(token_env)
    if not token:
        return {"action": "reload", "done": False, "why": f"{token_env} not set"}
    try:
        res = httpx.post(f"{url.rstrip('/')}/admin/reload", json={"ref": stage},
                         headers={"Authorization": f"Bearer {token}"}, timeout=120.0)
    except httpx.HTTPError as err:
        return {"action": "reload", "done": False, "why": type(err).__name__}
    body = res.json() if res.headers.get("content-type", "").startswith("application/json") else {}
    return {"action": "reload", "done": res.status_code == 200, "status_code": res.status_code,
            "model_version": body.get("model_version"), "why": body.get("error")}


def act(root: Path, params: Any, doc: dict, *, service_url: str | None, audit_path: Path,
        push: str | None = None) -> list[dict]:
    """Run the actions the latest window calls for; each is appended to the audit log."""
    window = latest_window(doc)
    if window is None:
        return []
    stage = "prod" if "prod" in params.registry.stages else params.registry.stages[-1]
    done = imputation(root, params.paths.reports, window, params.monitor.missing_rate.amber)
    done += rollback(root, stage, window, service_url=service_url,
                     token_env=params.serve.admin_token_env, push=push)
    for entry in done:
        audit(audit_path, entry)
    return done
