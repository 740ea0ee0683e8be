"""Production targets (SLOs) of ``conf/monitor``'s ``targets``, graded per window.

Four dimensions, each figure graded GREEN/AMBER/RED beside the monitor's other figures (so
it reaches the status, the reasons, the alerts and the dashboard the same way):

- performance: the model's latency per request (p50, p99; the time the service logs for
  each request) and availability (the share of prediction requests not answered 5xx; a
  4xx is the client's error and a client that went away is nobody's);
- accuracy: live labelled accuracy inside a permissible range (too good is suspicious too:
  a leak, or labels copied from predictions);
- governance: the largest gap of a labelled metric between the groups of a column
  (numeric columns in quartiles), among groups with enough labelled records;
- cost: per 1,000 predictions, from the model's compute seconds at a price per CPU-hour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from loopline.config.operations import Band, Targets

Grade = Callable[[str, str | None, str], None]


def _bands(band: Band) -> str:
    if band.higher_is_better:
        return f"GREEN ≥ {band.amber:g}, RED < {band.red:g}"
    return f"GREEN ≤ {band.amber:g}, RED > {band.red:g}"


def availability(served: int, errors: pd.DataFrame | None) -> float | None:
    """1 − the share of prediction requests answered 5xx (None without an error log)."""
    if errors is None:
        return None
    predict = errors[errors["route"] != "/feedback"]
    failed = int((predict["status"] >= 500).sum())
    total = served + int(len(predict[predict["status"] != 499]))
    return 1.0 - failed / total if total else None


def slice_gaps(labelled: pd.DataFrame, inputs: pd.DataFrame, columns: list[str], metric: str,
               positive: str | None, min_records: int) -> dict[str, dict[str, Any]]:
    """Per column: the metric per group (groups of at least ``min_records``) and the gap."""
    correct = (labelled["prediction"].astype(str) == labelled["label"].astype(str)).astype(float)
    if metric == "accuracy":
        value = correct
    elif metric == "error_rate":
        value = 1.0 - correct
    else:  # positive_rate: the share predicted as the positive class (demographic parity)
        value = (labelled["prediction"].astype(str) == str(positive)).astype(float)
    out = {}
    for col in columns:
        if col not in inputs.columns:
            continue
        key = inputs.loc[labelled.index, col]
        numeric = pd.to_numeric(key, errors="coerce")
        if numeric.notna().all() and numeric.nunique() > 8:
            key = pd.qcut(numeric, 4, duplicates="drop").astype(str)
        groups = value.groupby(key.astype(str), dropna=True).agg(["mean", "size"])
        groups = groups[groups["size"] >= min_records]
        if len(groups) < 2:
            continue
        out[col] = {"groups": {str(k): round(float(v), 4) for k, v in groups["mean"].items()},
                    "gap": float(groups["mean"].max() - groups["mean"].min())}
    return out


def grade_targets(out: dict, df: pd.DataFrame, inputs: pd.DataFrame,
                  errors: pd.DataFrame | None, targets: Targets, positive: str | None,
                  grade: Grade, *, min_requests: int = 1) -> None:
    """Add ``out["targets"]`` (each configured target's value) and grade each one, from a
    window's records (``df``) and inputs (:func:`grade_figures` does the grading).

    Availability is graded once a window has ``min_requests`` (served and failed)."""
    per_request = df.drop_duplicates("request_id")["latency_ms"].to_numpy(dtype=float)
    labelled = df[df["label"].notna()]
    correct = int((labelled["prediction"].astype(str) == labelled["label"].astype(str)).sum())
    gap = targets.slice_gap
    grade_figures(
        out, targets, grade,
        latency=(float(np.percentile(per_request, 50)), float(np.percentile(per_request, 99)))
        if len(per_request) else None,
        served=int(df["request_id"].nunique()), errors=errors, min_requests=min_requests,
        labelled=len(labelled), correct=correct, records=len(df),
        compute_ms=float(per_request.sum()),
        gaps=lambda: slice_gaps(labelled, inputs, gap.columns, gap.metric, positive,
                                gap.min_records))


def grade_figures(out: dict, targets: Targets, grade: Grade, *,
                  latency: tuple[float, float] | None, served: int,
                  errors: pd.DataFrame | None, min_requests: int, labelled: int, correct: int,
                  records: int, compute_ms: float,
                  gaps: Callable[[], dict[str, dict[str, Any]]]) -> None:
    """Grade a window's targets from its figures, however they were computed (the frame
    of :func:`grade_targets`, or DuckDB's aggregates in :mod:`loopline.monitoring.columnar`):
    ``latency`` the per-request (p50, p99) in ms or None, ``served`` the requests answered,
    ``labelled``/``correct`` the labelled records and those predicted right, ``records``
    and ``compute_ms`` (the model's time over the window's requests) for the cost, and
    ``gaps`` computing the slice gaps (called only when that target is set)."""
    found: dict[str, Any] = {}
    for name, q, i in (("latency_p50_ms", 50, 0), ("latency_p99_ms", 99, 1)):
        band = getattr(targets, name)
        if band is not None and latency is not None:
            found[name] = latency[i]
            grade(name, band.status(found[name]),
                  f"model latency p{q} {found[name]:.2f} ms ({_bands(band)})")
    if targets.availability is not None:
        found["availability"] = availability(served, errors)
        if found["availability"] is not None and served + len(errors) >= min_requests:
            grade("availability", targets.availability.status(found["availability"]),
                  f"availability {found['availability']:.2%} ({_bands(targets.availability)})")
    if targets.accuracy is not None and labelled:
        acc = correct / labelled
        found["accuracy"] = acc
        grade("accuracy_range", targets.accuracy.status(acc),
              f"accuracy {acc:.3f} on {labelled} labelled records "
              f"({targets.accuracy.describe()})")
    gap = targets.slice_gap
    if gap is not None and labelled:
        found["slice_gap"] = by_column = gaps()
        if by_column:
            col = max(by_column, key=lambda c: by_column[c]["gap"])
            g = by_column[col]
            lo, hi = min(g["groups"], key=g["groups"].get), max(g["groups"], key=g["groups"].get)
            grade("slice_gap", gap.band.status(g["gap"]),
                  f"{gap.metric} gap {g['gap']:.3f} between {col} {hi!r} and {lo!r} "
                  f"({_bands(gap.band)})")
    if targets.cost is not None and records:
        seconds = compute_ms / 1000.0
        per_1k = seconds / 3600.0 * targets.cost.cpu_hour_price / records * 1000.0
        found["cost_per_1k"] = per_1k
        found["compute_seconds"] = seconds
        grade("cost_per_1k", targets.cost.per_1k.status(per_1k),
              f"cost {per_1k:.6f} per 1,000 predictions ({seconds:.2f} compute s at "
              f"{targets.cost.cpu_hour_price:g}/CPU-hour; {_bands(targets.cost.per_1k)})")
    if found:
        out["targets"] = found
