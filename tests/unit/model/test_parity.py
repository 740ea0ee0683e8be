"""The sklearn/ONNX parity report (model/parity.py) when parity fails."""

from __future__ import annotations

import pytest

from loopline.model.onnx.convert import convert
from loopline.model.parity import parity
from tests.helpers.model_data import (
    CATEGORICAL,
    NUMERIC,
    fit_pipeline,
)


def test_parity_reports_perturbed_model(frames):
    pipe = fit_pipeline(frames, "logreg", "median", "most_frequent")
    onx = convert(pipe, NUMERIC, CATEGORICAL)
    pipe.named_steps["model"].coef_ = pipe.named_steps["model"].coef_ * 1.5
    report = parity(pipe, onx, frames["test"], atol=1e-4, show=4)
    assert report["passed"] is False
    assert report["rows"] == len(frames["test"])
    assert report["max_abs_diff"] > 1e-4
    assert len(report["worst"]) == 4
    first = report["worst"][0]
    assert set(first) >= {"row", "sklearn", "onnx", "diff"}
    assert first["row"] in set(frames["test"].index)
    assert len(first["sklearn"]) == len(first["onnx"]) == 2
    if report["label_mismatches"] == 0:
        diffs = [w["diff"] for w in report["worst"]]
        assert diffs == sorted(diffs, reverse=True)
        assert diffs[0] == pytest.approx(report["max_abs_diff"])


def test_parity_rejects_empty_frame(frames):
    pipe = fit_pipeline(frames, "logreg", "mean", "missing")
    with pytest.raises(ValueError, match="at least one row"):
        parity(pipe, convert(pipe, NUMERIC, CATEGORICAL), frames["test"].iloc[:0])
