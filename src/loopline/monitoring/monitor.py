"""``loopline monitor``: the live model, window by window, and its RAG status.

Reads the inference log (predictions and feedback labels, written by the service) and the
training reference (``data/prepared/train.parquet``), cuts the log into fixed windows that
end now (or at ``until``), and computes for each:

- per-feature drift against the reference (:mod:`loopline.monitoring.drift`, Evidently's
  default tests) and the share of drifted features;
- the missing rate of each feature;
- prediction drift: Jensen–Shannon distance between the predicted classes and the class
  balance of the training labels; invalid probabilities; a constant prediction;
- labelled performance once enough feedback arrived (ROC AUC, accuracy, F1, precision,
  recall, Brier score, expected calibration error);
- operational figures: requests, records, model latency p50/p99, model versions, and the
  error rate (requests to the inference routes answered 4xx/5xx, from the log's errors).

Each figure is graded GREEN, AMBER or RED by the bands of ``conf/monitor``; a window's
status is its worst grade, with one reason per grade that is not GREEN. The latest window
with data gives the overall status, appended to the history file so trends stay visible.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopline.config.operations import MonitorConfig
from loopline.core.files import append_text, read_jsonl
from loopline.monitoring.drift import dataset_drift, jensenshannon
from loopline.monitoring.targets import grade_targets
from loopline.serving.inference_log import features

ORDER = {"GREEN": 0, "AMBER": 1, "RED": 2}
NO_DATA = "NO DATA"
# Figures of the service, not of a model: they alert, but never retrain or roll a model back.
SERVICE_FIGURES = frozenset({"error_rate", "availability", "latency_p50_ms", "latency_p99_ms",
                             "cost_per_1k"})


def worst(statuses: list[str | None]) -> str:
    found = [s for s in statuses if s in ORDER]
    return max(found, key=ORDER.get) if found else "GREEN"


def _ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of positive-class probabilities."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            total += mask.mean() * abs(y[mask].mean() - p[mask].mean())
    return float(total)


def performance(labels: pd.Series, predicted: pd.Series, p_pos: pd.Series, positive: str) -> dict:
    from sklearn.metrics import (
        accuracy_score,
        brier_score_loss,
        f1_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y = (labels.astype(str) == positive).to_numpy().astype(int)
    yhat = (predicted.astype(str) == positive).to_numpy().astype(int)
    p = p_pos.to_numpy(dtype=float)
    out = {"labels": int(len(y)), "accuracy": float(accuracy_score(y, yhat)),
           "precision": float(precision_score(y, yhat, zero_division=0)),
           "recall": float(recall_score(y, yhat, zero_division=0)),
           "f1": float(f1_score(y, yhat, zero_division=0)),
           "brier": float(brier_score_loss(y, p)), "ece": _ece(y, p),
           "log_loss": float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]))}
    out["roc_auc"] = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None
    return out


def window_report(df: pd.DataFrame, reference: pd.DataFrame, numeric: list[str],
                  categorical: list[str], classes: list[str], positive: str,
                  class_balance: dict[str, float], cfg: MonitorConfig, *,
                  by_version: bool = True, errors: pd.DataFrame | None = None) -> dict:
    """Figures, grades and reasons for one window of the log (one row per record).

    With ``by_version``, ``status_by_version`` grades each model version on its own records
    too (status, records, labels, reasons). ``errors`` are the window's failed requests
    (:func:`loopline.serving.inference_log.read_request_errors`), graded by ``cfg.error_rate``.
    """
    df = df.reset_index(drop=True)  # labels and probabilities are aligned by position
    fig = frame_figures(df, numeric, categorical, classes, positive, cfg)

    def targets(out: dict, grade: _Grades) -> None:
        grade_targets(out, df, features(df), errors, cfg.targets, positive, grade,
                      min_requests=cfg.min_requests)

    def version_report(version: str) -> dict:
        part = df[df["model_version"] == version]
        return window_report(part, reference, numeric, categorical, classes, positive,
                             class_balance, cfg, by_version=False)

    return assemble(fig, reference, numeric, categorical, classes, class_balance, cfg,
                    errors=errors,
                    targets=targets, version_report=version_report if by_version else None)


def frame_figures(df: pd.DataFrame, numeric: list[str], categorical: list[str],
                  classes: list[str], positive: str, cfg: MonitorConfig) -> dict:
    """What :func:`assemble` grades, from a window's records (one row per record)."""
    fig: dict[str, Any] = {"requests": int(df["request_id"].nunique()), "records": int(len(df)),
                           "versions": sorted(df["model_version"].unique().tolist())}
    lat = df["latency_ms"].to_numpy(dtype=float)
    fig["latency_ms"] = {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))}
    X = features(df, numeric + categorical)
    fig["X"] = X
    fig["missing_rate"] = {c: float(X[c].isna().mean()) for c in X.columns}
    pred = df["prediction"].astype(str)
    fig["predicted_share"] = pred.value_counts(normalize=True)
    p_pos = df["probabilities"].map(lambda d: d.get(positive) if isinstance(d, dict) else None)
    fig["mean_positive_probability"] = float(p_pos.astype(float).mean())
    probs = np.array([[d.get(c, np.nan) for c in classes] for d in df["probabilities"]], dtype=float)
    bad = (~np.isfinite(probs).all(axis=1) | (probs < 0).any(axis=1) | (probs > 1).any(axis=1)
           | (np.abs(probs.sum(axis=1) - 1.0) > 1e-4))
    fig["invalid_predictions"] = int(bad.sum())
    labelled = df[df["label"].notna().to_numpy() & ~bad]  # invalid rows are graded apart
    fig["labels"] = int(len(labelled))
    fig["performance"], fig["performance_by_version"] = None, {}
    if len(labelled) >= cfg.min_labels:
        fig["performance"] = performance(labelled["label"], labelled["prediction"],
                                         p_pos[labelled.index], positive)
        for version, part in labelled.groupby("model_version"):
            if len(part) >= cfg.min_labels:
                fig["performance_by_version"][str(version)] = performance(
                    part["label"], part["prediction"], p_pos[part.index], positive)
    return fig


def assemble(fig: dict, reference: pd.DataFrame, numeric: list[str], categorical: list[str],
             classes: list[str], class_balance: dict[str, float], cfg: MonitorConfig, *,
             errors: pd.DataFrame | None, targets: Any, version_report: Any = None) -> dict:
    """A window's report from its figures (:func:`frame_figures`, or the columnar reader's
    :func:`loopline.monitoring.columnar.window_figures`): grades, reasons, status.

    ``targets(out, grade)`` grades the production targets; ``version_report(version)`` is
    the report of one version's records (for ``status_by_version`` when several served).
    ``fig["X"]`` holds the records' features the drift tests compare with the reference: all
    of them, or a sample (``fig["sample"]``: rows, of, seed) stated in the report.
    """
    out: dict[str, Any] = {"requests": fig["requests"], "records": fig["records"],
                           "versions": fig["versions"]}
    grade = _Grades()
    grades, reasons = grade.grades, grade.reasons
    out["latency_ms"] = fig["latency_ms"]
    if errors is not None:
        _grade_errors(out, errors, out["requests"], cfg, grade)
    targets(out, grade)
    missing = fig["missing_rate"]
    out["missing_rate"] = missing
    worst_col = max(missing, key=missing.get) if missing else None
    if worst_col is not None:
        grade("missing_rate", cfg.missing_rate.status(missing[worst_col]),
              f"{worst_col} missing in {missing[worst_col]:.0%} of records "
              f"(bands {cfg.missing_rate.amber:.0%}/{cfg.missing_rate.red:.0%})")

    records = out["records"]
    if records >= cfg.min_rows:
        drift = dataset_drift(reference, fig["X"], numeric, categorical, methods=cfg.drift_methods,
                              thresholds={c: cfg.drift_threshold for c in numeric + categorical}
                              if cfg.drift_threshold else None)
        out["drift"] = [d.as_dict() for d in drift]
        judged = [d for d in drift if d.current_rows > 0]
        share = sum(d.drifted for d in judged) / len(judged) if judged else 0.0
        out["drift_share"] = share
        sample = fig.get("sample")
        if sample is not None:
            out["drift_sample"] = sample
        drifted = [d.column for d in judged if d.drifted]
        on = (f"; on a sample of {sample['rows']:,} of {sample['of']:,} records"
              if sample is not None else "")
        grade("drift_share", cfg.drift_share.status(share),
              f"{len(drifted)} of {len(judged)} features drifted ({', '.join(drifted)}){on}")
    else:
        out["drift"], out["drift_share"] = [], None
        grades["drift_share"] = None

    shares = fig["predicted_share"]
    out["predicted_share"] = {str(k): float(v) for k, v in shares.items()}
    out["mean_positive_probability"] = fig["mean_positive_probability"]
    invalid = fig["invalid_predictions"]
    out["invalid_predictions"] = invalid
    grade("invalid_predictions", "RED" if invalid else "GREEN",
          f"{invalid} records with invalid probabilities")
    top = shares.index[0] if len(shares) else None
    constant = records >= cfg.min_rows and top is not None and shares.iloc[0] >= cfg.constant_share
    grade("constant_predictions", "AMBER" if constant else "GREEN",
          f"{shares.iloc[0]:.1%} of records predicted {top!r}" if top is not None else "")
    if records >= cfg.min_rows:
        p = np.array([class_balance.get(c, 0.0) for c in classes])
        q = np.array([out["predicted_share"].get(c, 0.0) for c in classes])
        js = jensenshannon(p, q) if p.sum() > 0 and q.sum() > 0 else 0.0
        out["prediction_drift"] = js
        grade("prediction_drift", cfg.prediction_drift.status(js),
              f"predicted classes {out['predicted_share']} vs training {class_balance} "
              f"(JS {js:.3f})")
    else:
        out["prediction_drift"] = None

    out["labels"] = fig["labels"]
    perf = fig["performance"]
    if perf is not None:
        out["performance"] = perf
        for name, band in cfg.performance.items():
            value = perf.get(name)
            grade(name, band.status(value),
                  f"{name} {value:.3f} on {out['labels']} labelled records ({_bands(band)})"
                  if value is not None else f"{name} undefined")
        # per version, so an action judges a version on its own records only
        out["performance_by_version"] = {}
        for version, vp in fig["performance_by_version"].items():
            vp = dict(vp)
            vp["status"] = worst([b.status(vp.get(n)) for n, b in cfg.performance.items()])
            out["performance_by_version"][version] = vp
    else:
        out["performance"] = None
        out["performance_by_version"] = {}
    out["grades"] = grades
    out["status"] = worst(list(grades.values()))
    out["reasons"] = reasons
    if version_report is not None:  # each version on its own records, so an action judges
        out["status_by_version"] = {}  # the one in service
        for version in out["versions"]:
            if len(out["versions"]) == 1:
                sub = {**out, "status": grade.model_status(), "reasons": grade.model_reasons()}
            else:
                sub = version_report(version)
            out["status_by_version"][str(version)] = {
                "status": sub["status"], "records": sub["records"], "labels": sub["labels"],
                "reasons": sub["reasons"]}
    return out


class _Grades:
    """A window's grade per figure and one reason per grade that is not GREEN.

    The error rate and the service's targets (:data:`SERVICE_FIGURES`) are the service's,
    not a model's: :meth:`model_status` and :meth:`model_reasons` leave them out.
    """

    def __init__(self) -> None:
        self.grades: dict[str, str | None] = {}
        self.reasons: list[str] = []
        self._reason_of: dict[str, str] = {}

    def __call__(self, name: str, status: str | None, why: str) -> None:
        self.grades[name] = status
        if status in ("AMBER", "RED"):
            self.reasons.append(f"{status}: {why}")
            self._reason_of[name] = self.reasons[-1]

    def model_status(self) -> str:
        return worst([g for k, g in self.grades.items() if k not in SERVICE_FIGURES])

    def model_reasons(self) -> list[str]:
        return [r for k, r in self._reason_of.items() if k not in SERVICE_FIGURES]


def _grade_errors(out: dict, errors: pd.DataFrame, served: int, cfg: MonitorConfig,
                  grade: _Grades) -> None:
    """Error count, by status and route, and the error rate of the prediction requests.

    Failed /feedback calls are counted by route but left out of the rate: successful ones
    are not logged as requests, so they have no denominator. Clients that went away before
    sending their body (status 499) are counted apart, not as failures of the service.
    """
    gone = errors["status"] == 499
    predict = errors[(errors["route"] != "/feedback") & ~gone]
    n = int(len(predict))
    total = served + n
    out["errors"] = {"count": int(len(errors)),
                     "by_status": {str(k): int(v) for k, v in
                                   errors["status"].value_counts().sort_index().items()},
                     "by_route": {str(k): int(v) for k, v in
                                  errors["route"].value_counts().sort_index().items()},
                     **({"client_disconnects": int(gone.sum())} if gone.any() else {})}
    out["error_rate"] = n / total if total else None
    if cfg.error_rate is None or total < cfg.min_requests:
        return
    codes = ", ".join(f"{k}: {v}" for k, v in predict["status"].value_counts().sort_index().items())
    grade("error_rate", cfg.error_rate.status(out["error_rate"]),
          f"{n} of {total} prediction requests failed ({out['error_rate']:.1%}; {codes or 'none'}; "
          f"{_bands(cfg.error_rate)})")


def _errors_only(errors: pd.DataFrame, cfg: MonitorConfig) -> dict:
    """A window in which every request failed: nothing to judge but the error rate."""
    grade = _Grades()
    out: dict[str, Any] = {"requests": 0, "records": 0, "labels": 0, "versions": []}
    _grade_errors(out, errors, 0, cfg, grade)
    judged = [g for g in grade.grades.values() if g]
    out.update(grades=grade.grades, status=worst(judged) if judged else NO_DATA,
               reasons=grade.reasons)
    return out


def _bands(band) -> str:  # noqa: ANN001
    if band.higher_is_better:
        return f"GREEN ≥ {band.amber}, RED < {band.red}"
    return f"GREEN ≤ {band.amber}, RED > {band.red}"


def run(log: pd.DataFrame, reference: pd.DataFrame, *, numeric: list[str], categorical: list[str],
        classes: list[str], positive: str, target: str, cfg: MonitorConfig,
        until: float | None = None, size: float | None = None,
        errors: pd.DataFrame | None = None) -> dict:
    """The monitor document for the last ``cfg.windows`` windows ending at ``until``.

    ``size`` (seconds) overrides ``cfg.window`` (``loopline simulate`` cuts its own windows).
    ``errors``: the log's failed requests over the same span, for the error rate. ``log`` is
    a frame of records (:func:`loopline.serving.inference_log.read_predictions`); a log of
    any size goes through :func:`loopline.monitoring.columnar.run` instead, to the same
    document.
    """

    def report(k: int, start: float, end: float, failed: pd.DataFrame | None,
               balance: dict[str, float]) -> dict | None:
        part = log[(log["ts"] >= start) & (log["ts"] < end)]
        if part.empty:
            return None
        return window_report(part, reference, numeric, categorical, classes, positive,
                             balance, cfg, errors=failed)

    return document(report, reference, target=target, cfg=cfg, until=until, size=size,
                    errors=errors)


def document(report: Any, reference: pd.DataFrame, *, target: str, cfg: MonitorConfig,
             until: float | None = None, size: float | None = None,
             errors: pd.DataFrame | None = None) -> dict:
    """The monitor document: ``report(k, start, end, errors, class_balance)`` gives the
    report of the k-th window back from ``until`` (None when it has no records)."""
    until = time.time() if until is None else until
    size = cfg.window_seconds if size is None else size
    balance = reference[target].astype(str).value_counts(normalize=True)
    class_balance = {str(k): float(v) for k, v in balance.items()}
    windows = []
    for k in range(cfg.windows, 0, -1):
        start, end = until - k * size, until - (k - 1) * size
        failed = (None if errors is None else
                  errors[(errors["ts"] >= start) & (errors["ts"] < end)])
        entry: dict[str, Any] = {"start": start, "end": end}
        found = report(k, start, end, failed, class_balance)
        if found is None and failed is not None and len(failed):
            entry.update(_errors_only(failed, cfg))
        elif found is None:
            entry.update(status=NO_DATA, records=0, reasons=[])
        else:
            entry.update(found)
        windows.append(entry)
    judged = [w for w in windows if w["status"] != NO_DATA]
    latest = judged[-1] if judged else None
    return {"generated_at": until, "window": cfg.window if size == cfg.window_seconds
            else f"{size:.0f}s", "windows": windows,
            "status": latest["status"] if latest else NO_DATA,
            "reasons": latest["reasons"] if latest else ["no predictions in the log for these windows"],
            "latest_window": latest and {"start": latest["start"], "end": latest["end"]},
            "reference_rows": int(len(reference))}


def append_history(path: Path, doc: dict) -> list[dict]:
    """Append the run's status to the history file; the whole history, oldest first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    latest = next((w for w in reversed(doc["windows"]) if w["status"] != NO_DATA), {})
    perf = latest.get("performance") or {}
    entry = {"at": doc["generated_at"], "status": doc["status"], "reasons": doc["reasons"],
             "roc_auc": perf.get("roc_auc"), "accuracy": perf.get("accuracy"),
             "drift_share": latest.get("drift_share"), "records": latest.get("records", 0),
             "versions": latest.get("versions", [])}
    append_text(path, json.dumps(entry, default=_json_default) + "\n")
    return read_jsonl(path)


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")
