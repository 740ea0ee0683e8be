"""The drift tests the monitor implements (:mod:`loopline.monitoring.drift`), declared once.

Config validation reads this table (it imports nothing heavy), so a method the monitor
cannot run is refused when params.yaml is read, naming the method and the column.
"""

from __future__ import annotations

from dataclasses import dataclass


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


METHODS: dict[str, DriftMethod] = {m.name: m for m in (
    DriftMethod("wasserstein", 0.1, numeric_only=True),
    DriftMethod("ks", 0.05, p_value=True, numeric_only=True),
    DriftMethod("jensenshannon", 0.1),
    DriftMethod("psi", 0.1),
    DriftMethod("chisquare", 0.05, p_value=True),
    DriftMethod("z", 0.05, p_value=True),
)}


def check_method(method: str, column: str, numeric: bool | None = None) -> None:
    """ValueError unless the monitor implements ``method`` for a column of that kind."""
    m = METHODS.get(method)
    if m is None:
        raise ValueError(f"unknown drift method {method!r} for {column!r}: the monitor "
                         f"implements {', '.join(METHODS)}")
    if numeric is False and m.numeric_only:
        applicable = ", ".join(k for k, v in METHODS.items() if not v.numeric_only)
        raise ValueError(f"drift method {method!r} applies to numeric columns, and {column!r} "
                         f"is categorical (use one of {applicable})")
