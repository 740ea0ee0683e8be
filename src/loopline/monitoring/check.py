"""One monitoring pass over an instance: what ``loopline monitor`` and ``loopline simulate`` run.

Reads the inference log and the training reference, computes the windows
(:mod:`loopline.monitoring.monitor`), appends the status to the history, writes the Evidently
HTML report of the latest window, when asked acts on the status
(:mod:`loopline.monitoring.actions`), writes the document and only then delivers alerts.
The document is written to ``reports/monitor.json`` and every action to the audit log
``reports/monitor_audit.jsonl``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from loopline.core.errors import LooplineError
from loopline.core.layout import MONITOR_AUDIT, MONITOR_HTML, MONITOR_JSON, Layout


def check(root: Path, params: Any, cfg: Any, *, log_path: Any, until: float | None = None,
          size: float | None = None, html: bool = True, act: bool = False,
          service_url: str | None = None, push: str | None = None,
          retrain_pr: bool = False) -> dict:
    """Run the monitor once (windows ending at ``until``, default now) and return its document.

    ``log_path`` is the local SQLite log or the object store every replica ships to (a URL
    or a :class:`loopline.serving.log_store.Store`), read by the same reader.
    """
    import pandas as pd

    from loopline.core.files import write_json
    from loopline.monitoring import alerts, columnar
    from loopline.monitoring import monitor as mon
    from loopline.serving.log_store import open_log

    source = open_log(log_path)
    lay = Layout.of(root, params.paths)
    train = lay.split("train")
    if not train.is_file():
        raise LooplineError(f"no training reference at {train}: run `loopline run` (or `loopline pull`)")
    numeric, categorical = params.data.feature_columns(params.features.drop)
    reference = pd.read_parquet(train)
    target = params.data.target
    classes = list(params.data.schema_.columns[target].categories or [])
    end = time.time() if until is None else until
    span = cfg.windows * (cfg.window_seconds if size is None else size)
    # columnar: aggregates in SQL over the window, drift on a bounded sample per window
    doc, latest = columnar.run(source, reference, numeric=numeric, categorical=categorical,
                               classes=classes, positive=params.data.positive_class,
                               target=target, cfg=cfg, until=end, size=size)
    links = [f"{params.paths.reports}/{MONITOR_JSON}"]
    if html and latest is not None and len(latest):
        evidently_html(lay.report(MONITOR_HTML), reference, latest, numeric, categorical,
                       cfg.html_max_rows)
        links.append(f"{params.paths.reports}/{MONITOR_HTML}")
    doc["history"] = mon.append_history(root / cfg.history, doc)[-50:]
    audit_path = lay.report(MONITOR_AUDIT)
    from loopline.monitoring import judge

    judgement = judge.evaluate(root, source, now=until)  # the rollout under way, if any
    if judgement is not None:
        doc["rollout"] = judgement
    if act:
        from loopline.monitoring.actions import act as run_actions
        from loopline.monitoring.actions import rollout_step

        # the monitored span's labelled records, not only the latest window's
        labelled = source.labelled(since=end - span, until=end)
        doc["actions"] = rollout_step(root, judgement, service_url=service_url,
                                      token_env=params.serve.admin_token_env, push=push)
        for entry in doc["actions"]:
            alerts.audit(audit_path, entry)
        doc["actions"] += run_actions(root, params, doc, service_url=service_url,
                                      audit_path=audit_path, push=push, labelled=labelled,
                                      retrain_pr=retrain_pr, rollout=judgement)
    write_json(lay.report(MONITOR_JSON), doc)
    # notify last: a failing notification never costs the status, the reports or the actions
    doc["alerts"] = alerts.deliver(root, cfg.alerts, params.artifact, doc, links, audit_path)
    doc["warnings"] = [*doc.get("warnings", []), *alerts.warnings(doc["alerts"])]
    write_json(lay.report(MONITOR_JSON), doc)
    return doc


def evidently_html(path: Path, reference: Any, part: Any, numeric: list[str],
                   categorical: list[str], max_rows: int) -> None:
    """Evidently's drift and data summary report of ``part`` against the reference:
    ``part`` is records (a frame of :func:`read_predictions`) or their features."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    from loopline.serving.inference_log import features

    cur = (features(part, numeric + categorical) if "inputs" in part.columns
           else part[numeric + categorical]).reset_index(drop=True)
    cur = cur.sample(min(len(cur), max_rows), random_state=0) if len(cur) > max_rows else cur
    ref = reference[numeric + categorical]
    ref = ref.sample(min(len(ref), max_rows), random_state=0) if len(ref) > max_rows else ref
    for c in categorical:
        cur[c] = cur[c].astype(object)
        ref = ref.assign(**{c: ref[c].astype(object)})
    dd = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snap = Report([DataDriftPreset(columns=numeric + categorical), DataSummaryPreset()]).run(
        current_data=Dataset.from_pandas(cur, data_definition=dd),
        reference_data=Dataset.from_pandas(ref, data_definition=dd))
    path.parent.mkdir(parents=True, exist_ok=True)
    snap.save_html(str(path))
