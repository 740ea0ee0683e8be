"""The simulation's steps (simulate/run.py): drift scores on one scale."""

from __future__ import annotations

from loopline.simulate.run import drift_score


def test_drift_score_puts_every_method_on_one_scale() -> None:
    assert drift_score({"kind": "distance", "value": 0.2, "threshold": 0.1}) == 2.0
    assert drift_score({"kind": "p-value", "value": 0.05, "threshold": 0.05}) == 1.0
    assert drift_score({"kind": "p-value", "value": 0.0, "threshold": 0.05}) > 100
    assert drift_score({"kind": "p-value", "value": 0.5, "threshold": 0.05}) < 1
