"""Production targets (monitoring/targets.py and monitor.targets): graded per window, the
service's figures kept out of the model's status."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from loopline.config.operations import MonitorConfig, Range, Targets
from loopline.monitoring.monitor import _Grades
from loopline.monitoring.targets import availability, grade_targets
from loopline.serving.inference_log import features


def _log(n: int = 200) -> pd.DataFrame:
    """n one-record requests: Home 'rent' predicted right 60% of the time, 'own' 90%."""
    rows = []
    for i in range(n):
        home = "rent" if i % 2 else "own"
        right = (i // 2) % 10 < (6 if home == "rent" else 9)
        rows.append({"request_id": f"r{i}", "idx": 0, "ts": float(i), "model_version": "v1",
                     "inputs": {"Home": home, "Age": 20 + i % 50}, "prediction": "good",
                     "probabilities": {"good": 0.8, "bad": 0.2},
                     "latency_ms": 1.0 if i < n - 3 else 40.0,
                     "label": "good" if right else "bad"})
    return pd.DataFrame(rows)


def _grade(targets: dict, errors: pd.DataFrame | None = None) -> tuple[dict, _Grades]:
    df = _log()
    out: dict = {}
    grade = _Grades()
    grade_targets(out, df, features(df), errors, Targets(**targets), "good", grade)
    return out, grade


def test_latency_accuracy_and_cost_are_graded() -> None:
    out, grade = _grade({"latency_p50_ms": {"amber": 5, "red": 20},
                         "latency_p99_ms": {"amber": 10, "red": 30},
                         "accuracy": {"low": 0.80, "high": 0.99},
                         "cost": {"cpu_hour_price": 3.6, "per_1k": {"amber": 0.01, "red": 0.1}}})
    assert grade.grades["latency_p50_ms"] == "GREEN"
    assert grade.grades["latency_p99_ms"] == "RED"          # three 40 ms requests of 200
    assert out["targets"]["accuracy"] == pytest.approx(0.75)
    assert grade.grades["accuracy_range"] == "RED"
    # 197 × 1 ms + 3 × 40 ms = 0.317 s at 3.6 per hour, over 200 predictions, per 1,000
    assert out["targets"]["cost_per_1k"] == pytest.approx(0.317 / 3600 * 3.6 / 200 * 1000)
    assert grade.grades["cost_per_1k"] == "GREEN"
    assert any("accuracy 0.750" in r for r in grade.reasons)


def test_the_slice_gap_names_the_groups() -> None:
    out, grade = _grade({"slice_gap": {"columns": ["Home", "Age"], "min_records": 20,
                                       "band": {"amber": 0.05, "red": 0.2}}})
    gap = out["targets"]["slice_gap"]["Home"]
    assert gap["groups"] == {"own": 0.9, "rent": 0.6} and gap["gap"] == pytest.approx(0.3)
    assert "Age" in out["targets"]["slice_gap"]  # numeric: quartiles
    assert grade.grades["slice_gap"] == "RED"
    assert "between Home 'own' and 'rent'" in grade.reasons[0]


def test_availability_counts_5xx_only_and_the_service_figures_stay_out_of_the_model() -> None:
    errors = pd.DataFrame({"ts": [1.0] * 5, "route": ["/predict"] * 3 + ["/feedback", "/predict"],
                           "status": [500, 503, 400, 500, 499], "model_version": ["v1"] * 5})
    assert availability(200, errors) == pytest.approx(1 - 2 / 203)  # 499 is nobody's, /feedback apart
    out, grade = _grade({"availability": {"amber": 0.999, "red": 0.98}}, errors)
    assert grade.grades["availability"] == "AMBER"
    assert grade.model_status() == "GREEN" and grade.model_reasons() == []


def test_targets_are_checked_when_the_config_is_read() -> None:
    with pytest.raises(ValidationError, match="must be below high"):
        Range(low=0.9, high=0.8)
    with pytest.raises(ValidationError, match="metric"):
        MonitorConfig(targets={"slice_gap": {"columns": ["Home"], "metric": "roc"}})
    with pytest.raises(ValidationError, match="extra|not permitted"):
        MonitorConfig(targets={"latency_p95_ms": {"amber": 1, "red": 2}})
    assert Range(low=0.7, high=0.99, margin=0.02).status(0.715) == "AMBER"
    assert MonitorConfig().targets == Targets()  # nothing graded unless asked
