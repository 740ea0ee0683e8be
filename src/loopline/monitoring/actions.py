"""What ``loopline monitor --act`` does about a status, each step recorded in the audit log.

- **Missing-rate alarm** (a feature's missing rate graded AMBER or RED): the imputation policy
  of seed 000 applies. The served model carries its imputers (numeric mean, median or KNN;
  categorical most-frequent or a "missing" category, from ``conf/features``), so missing
  values are filled inside the model; the action records, per alarming feature, the policy
  and fill value the model applies (from ``reports/prepare.json``).
- **Retrain** (AMBER, with at least ``min_labels`` labelled records in the window): the
  labelled records are appended to the data source, the pipeline and its gate run
  (``loopline run``); on a pass the change is committed, registered and promoted to the
  stage (and the service reloads); on a failure the work tree is restored and nothing is
  promoted. Locally this happens on the current branch; a clean tree is required.
- **Rollback** (RED on the live performance of the version currently assigned to the stage,
  judged on that version's own labelled records): the stage is rolled back with
  :func:`loopline.registry.actions.rollback` to the last earlier version that passed its gate (the
  reasons go to the audit log) and, given a service URL and its admin token, the running
  service reloads to it. A version already replaced is never rolled back again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from loopline.core.dvc import dvc
from loopline.core.errors import LooplineError
from loopline.core.files import append_text, json_or_none, write_atomic
from loopline.core.git import git
from loopline.core.layout import METRICS_JSON, PREPARE_JSON, Layout
from loopline.monitoring.alerts import audit


def latest_window(doc: dict) -> dict | None:
    return next((w for w in reversed(doc["windows"]) if w["status"] in ("GREEN", "AMBER", "RED")),
                None)


def imputation(root: Path, reports: str, window: dict, amber: float) -> list[dict]:
    """The imputation each alarming feature (missing rate above ``amber``) gets in the model."""
    if (window.get("grades") or {}).get("missing_rate") not in ("AMBER", "RED"):
        return []
    plan = (json_or_none(Layout(root, reports=reports).report(PREPARE_JSON)) or {}).get(
        "imputation", {})
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
    from loopline.registry import actions as registry

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


ROLLOUT_DECISIONS = ("advance", "complete", "abort")


def rollout_step(root: Path, judgement: dict | None, *, service_url: str | None,
                 token_env: str, push: str | None = None) -> list[dict]:
    """Carry out the judge's decision on the rollout under way
    (:mod:`loopline.monitoring.judge`): advance or complete it, or abort it with the reasons,
    through :mod:`loopline.registry.rollout` (an audited registry event); then reload the
    service, which reads the new share (or the new prod) from the registry. ``wait`` does
    nothing. A rollout moved by someone else since it was judged is left alone."""
    from loopline.registry import rollout

    if not judgement or judgement.get("decision") not in ROLLOUT_DECISIONS:
        return []
    decision = judgement["decision"]
    entry: dict[str, Any] = {"action": "rollout", "decision": decision, "done": False,
                             "version": judgement["version"], "step": judgement.get("step"),
                             "tag": judgement.get("tag")}
    reason = ("monitor: " + "; ".join(judgement.get("reasons") or []))[:400]
    try:  # only if the rollout is still where it was judged (checked under the registry lock)
        if decision == "abort":
            res = rollout.abort(root, reason=reason, push=push, expect=judgement.get("tag"))
        else:
            res = rollout.advance(root, reason=reason, push=push, expect=judgement.get("tag"))
    except LooplineError as err:
        return [{**entry, "why": str(err)}]
    out: list[dict[str, Any]] = [{
        **entry, "done": True, "stage": res.get("stage"), "champion": res.get("champion"),
        "share": res.get("share"), "previous_share": res.get("previous_share"),
        "registry_tag": res.get("canary_tag") if decision == "abort" else res.get("tag"),
        "reason": reason}]
    if service_url:
        out.append(reload_service(service_url, res.get("stage") or "prod", token_env))
    return out


def reload_service(url: str, stage: str, token_env: str) -> dict:
    from loopline.serving.reload import request_reload

    return request_reload(url, stage, token_env).action()


def _trained_through(audit_path: Path) -> float:
    """The newest log time of the records a previous retrain already appended (0 if none)."""
    if not audit_path.is_file():
        return 0.0
    through = 0.0
    for line in audit_path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("action") == "retrain" and entry.get("appended"):
            through = max(through, float(entry.get("through") or 0.0))
    return through


RETRAIN_BRANCH = "loopline/retrain-"


def retrain(root: Path, params: Any, window: dict, labelled: Any, stage: str, *,
            service_url: str | None, push: str | None, audit_path: Path,
            as_pr: bool = False) -> list[dict]:
    """Append the new labelled records to the data, re-run, and promote on a pass.

    Retraining answers an AMBER of the version in service, judged on its own records: a
    window that is AMBER only because of an earlier version's records (or whose version in
    service has fewer than ``min_labels`` labels yet) waits. Only labelled records newer
    than those a previous retrain appended, and not already in the data, are added.

    With ``as_pr`` (CI), a passed retraining is committed on a new branch
    ``loopline/retrain-<time>``, pushed to ``push`` and proposed as a pull request (GitHub
    API, ``GITHUB_TOKEN``); the checkout goes back to its branch, and registering and
    promoting follow the merge (main.yml). While such a pull request is open, no other is made.
    """
    from loopline.monitoring.monitor import SERVICE_FIGURES, worst

    # the model's grades decide, not the error rate or the service's targets: a new model
    # would not mend them (nor should a RED error rate stop a retraining the model needs)
    model_status = worst([g for k, g in (window.get("grades") or {}).items()
                          if k not in SERVICE_FIGURES])
    if model_status != "AMBER" or labelled is None:
        if window.get("status") == "AMBER" and model_status == "GREEN" and labelled is not None:
            return [{"action": "retrain", "done": False,
                     "why": "the window is AMBER for its error rate only: the service's "
                            "failures, which a new model would not mend"}]
        return []
    entry: dict[str, Any] = {"action": "retrain", "done": False}
    min_labels = params.monitor.min_labels
    from loopline.registry import actions as registry

    try:
        current = registry.which(stage, root)["version"]
    except LooplineError:  # nothing assigned (e.g. serving a local export): the whole window
        current = None
    own = (window.get("status_by_version") or {}).get(current) if current else None
    if current and (own is None or own["labels"] < min_labels):
        return [{**entry, "why": f"waiting for labels: {current} (in {stage}) has "
                                 f"{own['labels'] if own else 0} labelled records in the window, "
                                 f"{min_labels} needed"}]
    if own is not None and own["status"] == "GREEN":
        return [{**entry, "why": f"{current} (in {stage}) is GREEN on its own {own['records']} "
                                 "records; the window is AMBER for another reason: "
                                 + "; ".join(window.get("reasons") or [])}]
    data = params.data
    if data.id_column or data.order_column:
        return [{**entry, "why": "data.id_column/order_column set: new rows need ids and order "
                                 "from the source system, not from the log"}]
    if as_pr and not push:
        return [{**entry, "why": "a retraining pull request needs --push REMOTE for its branch"}]
    dirty = git(root, "status", "--porcelain", "--untracked-files=no").stdout.strip()
    if dirty:
        return [{**entry, "why": "the work tree has uncommitted changes"}]
    if as_pr:
        from loopline.gitops import github

        try:
            open_prs = github.open_pulls(RETRAIN_BRANCH)
        except LooplineError as err:
            return [{**entry, "why": str(err)}]
        if open_prs:
            return [{**entry, "why": "a retraining pull request is open already: "
                                     f"{open_prs[0].get('html_url') or open_prs[0].get('number')}"}]
    rows, old, parquet = _new_rows(root, params, labelled, _trained_through(audit_path))
    entry["records"] = int(len(rows))
    if len(rows) < min_labels:
        return [{**entry, "why": f"{len(rows)} labelled records not yet in the data, "
                                 f"{min_labels} needed"}]
    source = root / data.source
    if parquet:
        import pandas as pd

        both = pd.concat([old, rows.drop(columns="_ts")], ignore_index=True)
        write_atomic(source, lambda p: both.to_parquet(p, index=False))
    else:
        from loopline.pipeline.tabular import csv_delimiter, csv_encoding

        append_text(source, rows.drop(columns="_ts").to_csv(header=False, index=False,
                                                            sep=csv_delimiter(source)),
                    encoding=csv_encoding(source))
    entry.update(appended=True, through=float(rows["_ts"].max()))
    from loopline.pipeline.repro import run_pipeline

    try:
        outcome = run_pipeline(root)
        gate, why = outcome.gate or {}, outcome.error_line()
    except LooplineError as err:
        gate, why = {}, f"`loopline run` failed: {err.message}"
    if why or gate.get("verdict") != "pass":
        _restore(root)
        return [{**entry, "appended": False,
                 "why": f"retrained model not promoted ({why}); work tree restored"}]
    message = f"Retrain on {len(rows)} labelled records from the monitor (status AMBER)"
    if as_pr:
        return [_propose(root, params, entry, window, gate, message, push)]
    git(root, "add", "-u")  # the data and what the pipeline changed, not the monitor's files
    git(root, "commit", "-q", "-m", message)
    reg = registry.register(root, push=push)
    promoted = registry.promote(reg["version"], stage, root=root, push=push)
    out = [{**entry, "done": True, "version": reg["version"], "commit": reg["commit"],
            "stage": stage, "tag": promoted.get("tag")}]
    if service_url:
        out.append(reload_service(service_url, stage, params.serve.admin_token_env))
    return out


def _new_rows(root: Path, params: Any, labelled: Any, through: float) -> tuple[Any, Any, bool]:
    """The labelled records as data rows (with their log time in ``_ts``) that the data lacks."""
    from loopline.pipeline.tabular import (
        blank_placeholders,
        content_row_ids,
        normalise_objects,
        read_table,
        table_format,
    )
    from loopline.serving.inference_log import features

    data = params.data
    source = root / data.source
    parquet = table_format(source, data.format) == "parquet"
    # as ingest reads it: the header's names without the spaces after ", " ("work", as the
    # service logs the column, not " work"), the delimiter and encoding found
    old = read_table(source, data.format, shown_as=data.source)
    labelled = labelled[labelled["ts"] > through]
    rows = features(labelled).reset_index(drop=True)
    rows[data.target] = labelled["label"].astype(str).to_numpy()
    rows = rows.reindex(columns=old.columns)
    rules = data.schema_.columns
    for col in rows.columns:  # one type per column of a Parquet file, True/False as written
        rows[col] = _as_the_datas(rows[col], old[col], rules.get(col))
    if len(rows):
        # the data as ingest reads it ("?" or " " among numbers a gap), each side's values
        # as prepare reads them: the service logged 1.0 for the data's True, 3.0 for "3.0"
        missing = data.schema_.missing_values
        known = set(content_row_ids(_as_prepared(blank_placeholders(normalise_objects(old), missing), rules)))
        ids = content_row_ids(_as_prepared(rows.reset_index(drop=True), rules))
        keep = (~ids.str.replace(r"-\d+$", "", regex=True).isin(known)).to_numpy()
        rows = rows.reset_index(drop=True)[keep]
        rows["_ts"] = labelled["ts"].to_numpy()[keep]
    else:
        rows["_ts"] = []
    return rows, old, parquet


def _as_the_datas(values: Any, column: Any, rule: Any) -> Any:
    """Logged values written as the data's column holds them: True/False in a boolean
    column (the service logs 1.0/0.0), numbers in a numeric one (the label "1" of a 0/1
    target), text in a text one (the logged 3.0 of numbers with "?" for gaps is "3")."""
    import pandas as pd

    from loopline.pipeline.tabular import as_text

    if (rule is not None and rule.type == "boolean") or pd.api.types.is_bool_dtype(column):
        out = values.map(lambda v: None if v is None or v != v else bool(float(v)))
        return out.astype(bool) if pd.api.types.is_bool_dtype(column) and out.notna().all() else out
    if pd.api.types.is_numeric_dtype(column):
        out = pd.to_numeric(values, errors="coerce")
        return out.astype(column.dtype) if pd.api.types.is_integer_dtype(column) and out.notna().all() else out
    if column.dtype == object or isinstance(column.dtype, pd.StringDtype):
        return as_text(values).astype(column.dtype)
    return values


def _as_prepared(df: Any, rules: Any) -> Any:
    """Each column as prepare casts it (:func:`~loopline.pipeline.tabular.as_prepared`), so a
    row's content id does not depend on how a file or a log typed its values."""
    import pandas as pd

    from loopline.pipeline.tabular import as_prepared

    return pd.DataFrame({col: as_prepared(df[col], rules.get(col)).to_numpy() for col in df.columns},
                        columns=list(df.columns))


def _restore(root: Path) -> None:
    git(root, "checkout", "--", ".")
    dvc(root, "checkout", "-q", check=False)


def _propose(root: Path, params: Any, entry: dict, window: dict, gate: dict, message: str,
             remote: str) -> dict:
    """Commit the retraining on a new branch, push it, open its pull request, come back."""
    import time

    from loopline.gitops import github

    back = git(root, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
    base_branch = back if back != "HEAD" else (os.environ.get("GITHUB_REF_NAME") or "main")
    branch = RETRAIN_BRANCH + time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    git(root, "checkout", "-q", "-b", branch)
    try:
        git(root, "add", "-u")
        git(root, "commit", "-q", "-m", message)
        commit = git(root, "rev-parse", "HEAD").stdout.strip()
        pushed = git(root, "push", "-q", remote, f"HEAD:refs/heads/{branch}", check=False)
    finally:
        git(root, "checkout", "-q", back if back != "HEAD" else "-")
        dvc(root, "checkout", "-q", check=False)
    out = {**entry, "branch": branch, "commit": commit}
    if pushed.returncode != 0:
        return {**out, "why": f"git push {remote} {branch} failed: "
                              f"{(pushed.stderr.strip().splitlines() or ['?'])[-1]}"}
    metrics = json_or_none(Layout.of(root, params.paths).report(METRICS_JSON)) or {}
    lines = [f"The monitor graded the live model **AMBER** and retrained it on "
             f"{entry['records']} new labelled records from the inference log.", "",
             "Reasons:", *[f"- {r}" for r in window.get("reasons", [])], "",
             f"Gate: **{gate.get('verdict')}**. Held-out metrics of the retrained model: "
             + ", ".join(f"{k} {metrics[k]:.4f}" for k in ("roc_auc", "accuracy", "recall", "f1")
                         if isinstance(metrics.get(k), float)), "",
             "Merging registers the model (main.yml); promote it to prod with "
             "`loopline promote HEAD --to prod` when it has been reviewed.",
             "The review comment with the metric and params diffs follows from pr.yml."]
    try:
        pr = github.open_pull(message, branch, base_branch, "\n".join(lines))
    except LooplineError as err:
        return {**out, "why": f"branch pushed, pull request not opened: {err}"}
    return {**out, "done": True, "pull_request": pr["number"], "url": pr["url"]}


def act(root: Path, params: Any, doc: dict, *, service_url: str | None, audit_path: Path,
        push: str | None = None, labelled: Any = None, retrain_pr: bool = False,
        rollout: dict | None = None) -> list[dict]:
    """Run the actions the latest window calls for; each is appended to the audit log.

    While a rollout is under way (``rollout``, the judge's decision of this run), the stage
    is the rollout's to move: no retraining or rollback (the judge aborts a failing
    candidate; a retrained version would be another rollout), only the imputation record.
    """
    window = latest_window(doc)
    if window is None:
        return []
    stage = params.registry.serving_stage
    done = imputation(root, params.paths.reports, window, params.monitor.missing_rate.amber)
    if rollout is not None:
        if window.get("status") in ("AMBER", "RED"):
            done.append({"action": "hold", "done": False,
                         "why": f"a rollout of {rollout.get('version')} to {stage} was under "
                                "way: no retraining or rollback until it has ended"})
    else:
        done += rollback(root, stage, window, service_url=service_url,
                         token_env=params.serve.admin_token_env, push=push)
        done += retrain(root, params, window, labelled, stage, service_url=service_url,
                        push=push, audit_path=audit_path, as_pr=retrain_pr)
    for entry in done:
        audit(audit_path, entry)
    return done
