"""Names and the rules they follow: artifact and stage names, metrics and their direction.

Every other module derives from these (config validation, the registry, ``loopline init``,
the gate, reports, the monitor), so a rule changes in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# An artifact or registry stage name: it becomes part of Git tags (``<artifact>@v1.2.0``,
# ``<artifact>#<stage>#3``), so it must satisfy GTO's name rule
# (``gto.constants.name``: ``[a-zA-Z0-9]([a-zA-Z0-9-/_]*[a-zA-Z0-9])?``); loopline asks for a
# subset (lower case, a letter first, no '/' or '_') so a name is also a valid Bento, image
# and DNS name.
NAME_PATTERN = r"[a-z]([a-z0-9-]*[a-z0-9])?"
NAME_RE = re.compile(rf"^{NAME_PATTERN}$")
NAME_HINT = "lower-case letters, digits and '-', starting with a letter and not ending with '-'"


def check_name(name: object, what: str) -> str:
    """``name`` if it follows the name rule, else ValueError naming ``what`` and the rule."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"{what} {name!r} is not a valid name: use {NAME_HINT} (e.g. credit-risk)")
    return name


@dataclass(frozen=True)
class Metric:
    """A classification metric loopline computes, and how it may be used.

    Attributes:
        name: The key in metrics.json, gate bounds, monitor bands.
        higher_is_better: The metric's sense (log loss and Brier: lower is better).
        gate: Can be an absolute or champion bound of the gate.
        per_slice: Computed per slice (evaluate's slices.json, the gate's slice checks).
        live: Computed by the monitor on labelled live records.
    """

    name: str
    higher_is_better: bool = True
    gate: bool = True
    per_slice: bool = True
    live: bool = True


# In display order (tables, reports, model cards).
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy"),
    Metric("precision"),
    Metric("recall"),
    Metric("f1"),
    Metric("roc_auc"),
    Metric("average_precision", gate=False, per_slice=False, live=False),
    Metric("log_loss", higher_is_better=False, per_slice=False),
    Metric("brier", higher_is_better=False, gate=False, per_slice=False),
)}
GATE_METRICS = tuple(m.name for m in METRICS.values() if m.gate)
SLICE_METRICS = tuple(m.name for m in METRICS.values() if m.per_slice)
LIVE_METRICS = tuple(m.name for m in METRICS.values() if m.live)


def higher_is_better(metric: str) -> bool:
    """The sense of ``metric`` (unknown metrics count as higher-is-better)."""
    m = METRICS.get(metric)
    return True if m is None else m.higher_is_better


def check_known(keys, allowed, what: str) -> None:
    """ValueError naming the first of ``keys`` that is not in ``allowed``."""
    for k in keys:
        if k not in allowed:
            raise ValueError(f"unknown {what} {k!r}: expected one of {', '.join(allowed)}")


# ----------------------------------------------------------------- drift methods
# The drift tests the monitor implements (loopline.monitoring.drift). Config validation
# reads this table, so a method the monitor cannot run is refused when params.yaml is read,
# naming the method and the column.


@dataclass(frozen=True)
class DriftMethod:
    """One drift test.

    Attributes:
        name: The name used in conf/monitor ``drift_methods`` (Evidently's name for it).
        threshold: Evidently's default threshold.
        p_value: A p-value test (drift below the threshold) rather than a distance (drift
            at or above it).
        numeric_only: Only applies to numeric columns.
    """

    name: str
    threshold: float
    p_value: bool = False
    numeric_only: bool = False


DRIFT_METHODS: dict[str, DriftMethod] = {m.name: m for m in (
    DriftMethod("wasserstein", 0.1, numeric_only=True),
    DriftMethod("ks", 0.05, p_value=True, numeric_only=True),
    DriftMethod("jensenshannon", 0.1),
    DriftMethod("psi", 0.1),
    DriftMethod("chisquare", 0.05, p_value=True),
    DriftMethod("z", 0.05, p_value=True),
)}


def check_method(method: str, column: str, numeric: bool | None = None) -> None:
    """ValueError unless the monitor implements ``method`` for a column of that kind."""
    m = DRIFT_METHODS.get(method)
    if m is None:
        raise ValueError(f"unknown drift method {method!r} for {column!r}: the monitor "
                         f"implements {', '.join(DRIFT_METHODS)}")
    if numeric is False and m.numeric_only:
        applicable = ", ".join(k for k, v in DRIFT_METHODS.items() if not v.numeric_only)
        raise ValueError(f"drift method {method!r} applies to numeric columns, and {column!r} "
                         f"is categorical (use one of {applicable})")


# A duration as configs and commands write it: a whole number and a unit (s, m, h, d).
DURATION_PATTERN = r"^\d+[smhd]$"
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    """Seconds in ``text`` (``90s``, ``15m``, ``24h``, ``7d``); ValueError naming the form."""
    text = str(text).strip()
    if not re.match(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration: a whole number and s, m, h or d (e.g. 24h)")
    return int(text[:-1]) * _UNIT_SECONDS[text[-1]]
