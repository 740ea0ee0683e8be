"""The simulation's traffic: seeded records from the held-back rows, drifting step by step.

A growing share of each step's records comes from a new regime: ``simulate.shift``
multiplies some numeric columns, ``simulate.concept`` sets their labels. Everything depends
on the seed and the configuration only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loopline.core.files import json_or_none
from loopline.core.layout import IMPORTANCE_JSON, Layout


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


def auto_drift(work: Path, params: Any, pool: Any) -> tuple[dict[str, float], tuple[str, float] | None]:
    """``simulate.shift`` and ``concept``, or the default choice (see :class:`SimulateConfig`).

    The default shifts the three most important numeric inputs of the sandbox's first model
    by 1.3 and makes the most important one decide the new regime's labels.
    """
    sim = params.simulate
    concept = (sim.concept.column, sim.concept.above) if sim.concept else None
    if sim.shift or concept:
        return dict(sim.shift), concept
    numeric, _ = params.data.feature_columns(params.features.drop)
    imp = json_or_none(Layout.of(work, params.paths).report(IMPORTANCE_JSON))
    ranked = [f["feature"] for f in imp["features"]] if imp is not None else []
    top = [c for c in ranked if c in numeric][:3] or numeric[:3]
    shift = dict.fromkeys(top, 1.3)
    col = top[0]
    return shift, (col, float((pool[col].astype(float) * 1.3).quantile(0.7)))
