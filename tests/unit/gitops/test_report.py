"""The review report (gitops/report.py): each metric's direction follows its sense."""

from __future__ import annotations

from loopline.gitops import report


def test_metric_direction_follows_each_metrics_sense() -> None:
    assert report.direction("roc_auc", 0.01) == "better"
    assert report.direction("log_loss", 0.01) == "worse"
    assert report.direction("brier", -0.02) == "better"
    assert report.direction("recall", 0.0) == "same"
    rows = report.metrics_diff({"recall": 0.6, "log_loss": 0.4}, {"recall": 0.5, "log_loss": 0.3})
    assert [(r["metric"], r["direction"]) for r in rows] == [("recall", "worse"), ("log_loss", "better")]
    assert report.params_diff({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 4}) == [
        {"key": "a.c", "base": 2, "head": 3}, {"key": "d", "base": None, "head": 4}]
    assert report.bar(0.5, 10) == "█████     " and report.bar(1.0, 4) == "████"
