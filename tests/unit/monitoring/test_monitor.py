"""The monitor's windows (monitoring/monitor.py): windows with known drift, missing data,
accuracy and failed requests get the expected RAG status."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loopline.config.operations import MonitorConfig
from loopline.monitoring import monitor as mon

DAY = 86400
UNTIL = 1_800_000_000.0


def reference(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(0, 1, n), "b": rng.exponential(2, n),
                         "k": rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2]),
                         "y": rng.choice(["bad", "good"], n, p=[0.3, 0.7])})


def window(day: int, n: int, *, noise: float, shift: float = 0.0, missing_b: float = 0.0,
           seed: int = 1) -> pd.DataFrame:
    """Records of one day: a score that predicts the label, blurred by ``noise``."""
    rng = np.random.default_rng(seed + day)
    a = rng.normal(shift, 1, n)
    b = rng.exponential(2, n)
    b[rng.random(n) < missing_b] = np.nan
    k = rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2] if shift == 0 else [0.2, 0.3, 0.5])
    score = rng.normal(0, 1, n)
    p_bad = 1 / (1 + np.exp(-(score - 0.85)))
    label = np.where(score + rng.normal(0, noise, n) > 0.85, "bad", "good")
    rows = []
    for i in range(n):
        rows.append({"request_id": f"d{day}-{i}", "idx": 0, "ts": UNTIL - (4 - day) * DAY + i,
                     "model_version": "v1", "inputs": {"a": a[i], "b": None if np.isnan(b[i]) else b[i],
                                                       "k": k[i]},
                     "prediction": "bad" if p_bad[i] >= 0.5 else "good",
                     "probabilities": {"bad": p_bad[i], "good": 1 - p_bad[i]},
                     "latency_ms": 0.3 + 0.01 * (i % 7), "label": label[i], "label_ts": None})
    return pd.DataFrame(rows)


def test_windows_get_the_expected_rag_status() -> None:
    log = pd.concat([window(1, 1500, noise=0.3),                       # clean, accurate
                     window(2, 1500, noise=1.7, missing_b=0.4),        # weaker, gaps in b
                     window(3, 1500, noise=4.0, shift=1.0)])           # drifted, near random
    cfg = MonitorConfig(window="1d", windows=3)
    doc = mon.run(log, reference(), numeric=["a", "b"], categorical=["k"], classes=["bad", "good"],
                  positive="bad", target="y", cfg=cfg, until=UNTIL)
    w1, w2, w3 = doc["windows"]
    assert w1["status"] == "GREEN", w1["reasons"]
    assert w1["performance"]["roc_auc"] > 0.8 and w1["drift_share"] == 0
    assert w2["status"] == "AMBER", w2["reasons"]
    assert 0.7 <= w2["performance"]["roc_auc"] < 0.8
    assert any("b missing in 4" in r for r in w2["reasons"])
    assert w3["status"] == "RED" and w3["performance"]["roc_auc"] < 0.7
    assert {d["column"] for d in w3["drift"] if d["drifted"]} == {"a", "k"}
    assert doc["status"] == "RED" and any(r.startswith("RED: roc_auc") for r in doc["reasons"])
    assert w1["latency_ms"]["p99"] == pytest.approx(0.36, abs=0.01)


def test_no_labels_yet_means_no_performance_grade_and_no_data_is_not_an_alarm() -> None:
    log = window(3, 500, noise=0.3).assign(label=None)
    cfg = MonitorConfig(window="1d", windows=3)
    doc = mon.run(log, reference(), numeric=["a", "b"], categorical=["k"], classes=["bad", "good"],
                  positive="bad", target="y", cfg=cfg, until=UNTIL)
    assert [w["status"] for w in doc["windows"][:2]] == ["NO DATA", "NO DATA"]
    assert doc["windows"][2]["performance"] is None and doc["status"] == "GREEN"


def test_constant_and_invalid_predictions_are_flagged() -> None:
    log = window(3, 300, noise=0.3)
    log["prediction"] = "good"
    log.loc[log.index[:3], "probabilities"] = [{"bad": 1.5, "good": -0.5}] * 3
    doc = mon.run(log, reference(), numeric=["a", "b"], categorical=["k"], classes=["bad", "good"],
                  positive="bad", target="y", cfg=MonitorConfig(window="1d", windows=1), until=UNTIL)
    w = doc["windows"][0]
    assert w["invalid_predictions"] == 3 and w["grades"]["invalid_predictions"] == "RED"
    assert w["grades"]["constant_predictions"] == "AMBER"


def errors_at(ts: list[float], status: int = 400, route: str = "/predict") -> pd.DataFrame:
    return pd.DataFrame({"ts": ts, "route": route, "status": status, "model_version": "v1"})


def test_failed_requests_give_an_error_rate_graded_apart_from_the_model() -> None:
    log = pd.concat([window(2, 300, noise=0.3, seed=3), window(3, 300, noise=0.3, seed=3)])
    day2, day3 = UNTIL - 2 * DAY, UNTIL - DAY
    errors = pd.concat([errors_at([day2 + i for i in range(6)]),            # 6 / 306: 2% GREEN
                        errors_at([day3 + i for i in range(40)]),           # 40 / 340: AMBER
                        errors_at([day3 + 50 + i for i in range(35)], 500)])  # 75 / 375: 20%
    cfg = MonitorConfig(window="1d", windows=3)
    doc = mon.run(log, reference(), numeric=["a", "b"], categorical=["k"], classes=["bad", "good"],
                  positive="bad", target="y", cfg=cfg, until=UNTIL, errors=errors)
    w2, w3 = doc["windows"][1], doc["windows"][2]
    assert w2["error_rate"] == pytest.approx(6 / 306) and w2["grades"]["error_rate"] == "GREEN"
    assert w2["status"] == "GREEN"
    assert w3["errors"] == {"count": 75, "by_status": {"400": 40, "500": 35},
                            "by_route": {"/predict": 75}}
    assert w3["error_rate"] == pytest.approx(0.2) and w3["status"] == "AMBER", w3["reasons"]
    assert w3["reasons"] == ["AMBER: 75 of 375 prediction requests failed (20.0%; 400: 40, 500: 35; "
                             "GREEN ≤ 0.05, RED > 0.2)"]
    # the model in service is fine on its own records: the error rate is the service's
    assert w3["status_by_version"]["v1"]["status"] == "GREEN"
    assert w3["status_by_version"]["v1"]["reasons"] == []


def test_a_window_where_every_request_failed_is_red_and_few_requests_are_not_graded() -> None:
    log = window(3, 300, noise=0.3, seed=3)
    errors = errors_at([UNTIL - 2 * DAY + i for i in range(30)], 400)
    errors = pd.concat([errors, errors_at([UNTIL - 3 * DAY + i for i in range(5)], 500)])
    cfg = MonitorConfig(window="1d", windows=3)
    doc = mon.run(log, reference(), numeric=["a", "b"], categorical=["k"], classes=["bad", "good"],
                  positive="bad", target="y", cfg=cfg, until=UNTIL, errors=errors)
    w1, w2, w3 = doc["windows"]
    assert w1["status"] == "NO DATA" and w1["error_rate"] == 1.0  # 5 < min_requests: not graded
    assert w2["status"] == "RED" and w2["records"] == 0 and w2["error_rate"] == 1.0
    assert w2["reasons"][0].startswith("RED: 30 of 30 prediction requests failed")
    assert w3["status"] == "GREEN" and w3["errors"]["count"] == 0 and w3["error_rate"] == 0.0
    off = MonitorConfig(window="1d", windows=3, error_rate=None)
    doc = mon.run(log, reference(), numeric=["a", "b"], categorical=["k"], classes=["bad", "good"],
                  positive="bad", target="y", cfg=off, until=UNTIL, errors=errors)
    assert doc["windows"][1]["status"] == "NO DATA" and "error_rate" not in doc["windows"][2]["grades"]


def test_failed_feedback_is_counted_but_not_in_the_rate_of_prediction_requests() -> None:
    log = window(3, 300, noise=0.3, seed=3)
    errors = pd.concat([errors_at([UNTIL - DAY + i for i in range(60)], 400, "/feedback"),
                        errors_at([UNTIL - DAY + 100 + i for i in range(3)], 400)])
    doc = mon.run(log, reference(), numeric=["a", "b"], categorical=["k"], classes=["bad", "good"],
                  positive="bad", target="y", cfg=MonitorConfig(window="1d", windows=1),
                  until=UNTIL, errors=errors)
    w = doc["windows"][0]
    assert w["errors"]["by_route"] == {"/feedback": 60, "/predict": 3} and w["errors"]["count"] == 63
    assert w["error_rate"] == pytest.approx(3 / 303) and w["status"] == "GREEN"


def test_each_version_is_judged_on_its_own_records() -> None:
    old = window(3, 600, noise=4.0)                                   # near random: AMBER or RED
    new = window(3, 600, noise=0.3, seed=9).assign(model_version="v2")  # accurate
    new["request_id"] = "n" + new["request_id"]
    doc = mon.run(pd.concat([old, new]), reference(), numeric=["a", "b"], categorical=["k"],
                  classes=["bad", "good"], positive="bad", target="y",
                  cfg=MonitorConfig(window="1d", windows=1), until=UNTIL)
    w = doc["windows"][0]
    assert w["status_by_version"]["v2"]["status"] == "GREEN"
    assert w["status_by_version"]["v1"]["status"] in ("AMBER", "RED")
    assert w["status_by_version"]["v2"]["labels"] == 600
