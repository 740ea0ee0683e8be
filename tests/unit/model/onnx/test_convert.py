"""ONNX export (model/onnx/convert.py): sklearn parity for every estimator and imputer,
the same bytes on every run."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

from loopline.model.features import (
    CATEGORICAL_IMPUTERS,
    NUMERIC_IMPUTERS,
    build_preprocessor,
)
from loopline.model.onnx.convert import convert
from loopline.model.parity import parity
from loopline.model.runtime import OnnxModel
from tests.helpers.model_data import (
    CATEGORICAL,
    ESTIMATORS,
    NUMERIC,
    fit_pipeline,
)

# ------------------------------------------------------------------------ parity passes


@pytest.mark.parametrize("categorical_imputer", CATEGORICAL_IMPUTERS)
@pytest.mark.parametrize("numeric_imputer", NUMERIC_IMPUTERS)
@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_parity_binary(frames, estimator, numeric_imputer, categorical_imputer):
    pipe = fit_pipeline(frames, estimator, numeric_imputer, categorical_imputer)
    onx = convert(pipe, NUMERIC, CATEGORICAL)
    for split in ("test", "train"):
        report = parity(pipe, onx, frames[split])
        assert report["passed"], (split, report)
        assert report["label_mismatches"] == 0
        assert report["max_abs_diff"] <= 1e-6


@pytest.mark.parametrize("numeric_imputer", NUMERIC_IMPUTERS)
@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_parity_multiclass_scaled(frames, estimator, numeric_imputer):
    """Multiclass, integer labels, and scaling forced on for trees too."""
    pipe = fit_pipeline(frames, estimator, numeric_imputer, "missing", y="y3", scale="standard")
    onx = convert(pipe, NUMERIC, CATEGORICAL)
    report = parity(pipe, onx, frames["test"])
    assert report["passed"], report
    model = OnnxModel(onx)
    assert model.classes == [0, 1, 2]
    assert model.predict(frames["test"]).dtype == np.int64


def test_random_forest_exact_ties_keep_sklearn_label(frames):
    """Two pure-leaf trees give many exact 0.5/0.5 rows; sklearn takes the first class."""
    est = RandomForestClassifier(n_estimators=2, random_state=0)
    prep = build_preprocessor(NUMERIC, CATEGORICAL, estimator=est)
    pipe = Pipeline([("prep", prep), ("model", est)]).fit(frames["train"], frames["y2"])
    proba = pipe.predict_proba(frames["test"])
    assert (proba[:, 0] == 0.5).sum() >= 3
    report = parity(pipe, convert(pipe, NUMERIC, CATEGORICAL), frames["test"])
    assert report["passed"], report


# -------------------------------------------------------------------- the export itself


def test_convert_gives_the_same_bytes_whatever_the_hash_seed(frames, tmp_path):
    """The same model exports to the same file, so DVC and the registry see no change."""
    import pickle
    import subprocess
    import sys

    pipe = fit_pipeline(frames, "hgb", "median", "most_frequent")
    (tmp_path / "pipe.pkl").write_bytes(pickle.dumps(pipe))
    script = ("import pickle, sys, hashlib; from loopline.model.onnx.convert import convert; "
              "p = pickle.load(open(sys.argv[1], 'rb')); "
              f"print(hashlib.sha256(convert(p, {NUMERIC!r}, {CATEGORICAL!r})).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", script, str(tmp_path / "pipe.pkl")],
                              capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout
               for seed in ("1", "2", "3")}
    assert len(digests) == 1


def test_convert_rejects_unlisted_column(frames):
    pipe = fit_pipeline(frames, "logreg", "mean", "missing")
    with pytest.raises(ValueError, match="plan"):
        convert(pipe, NUMERIC, ["city"])


ODD = {"age": "ratio/total", "income": "ratio_total", "score": "2nd try (€)",
       "city": "région.x", "plan": "label"}  # collide after sanitising; an output's name


def test_any_column_name_exports_and_scores_by_the_users_name(frames):
    """skl2onnx renames graph inputs (``ratio/total`` -> ``ratio_total``, which collides with
    a real ``ratio_total``); the model still takes and reports the user's own names."""
    odd = {k: v.rename(columns=ODD) if hasattr(v, "rename") and k in ("train", "test") else v
           for k, v in frames.items()}
    numeric, categorical = [ODD[c] for c in NUMERIC], [ODD[c] for c in CATEGORICAL]
    est = ESTIMATORS["hgb"]()
    prep = build_preprocessor(numeric, categorical, estimator=est)
    pipe = Pipeline([("prep", prep), ("model", est)]).fit(odd["train"], odd["y2"])
    onx = convert(pipe, numeric, categorical)
    model = OnnxModel(onx)
    assert model.numeric == numeric and model.categorical == categorical
    assert len(set(model.names.values())) == 5  # distinct graph inputs
    assert model.names["ratio/total"] != model.names["ratio_total"]
    report = parity(pipe, onx, odd["test"])
    assert report["passed"] and report["label_mismatches"] == 0, report
    records = odd["test"].iloc[:5].replace({np.nan: None, "": None}).to_dict("records")
    np.testing.assert_allclose(model.run_records(records)[1], pipe.predict_proba(odd["test"].iloc[:5]),
                               atol=1e-6)
