"""The model frame and the preprocessing (model/features.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from loopline.model.features import (
    StableKNNImputer,
    build_preprocessor,
    to_model_frame,
)
from tests.helpers.model_data import (
    CATEGORICAL,
    NUMERIC,
)


def test_to_model_frame_casts_and_orders():
    raw = pd.DataFrame(
        {
            "c": ["x", None, np.nan],
            "n": ["1.5", "", None],
            "k": pd.array([1, None, 3], dtype="Int64"),
            "extra": [1, 2, 3],
        }
    )
    out = to_model_frame(raw, ["n", "k"], ["c"])
    assert list(out.columns) == ["n", "k", "c"]
    assert out["n"].dtype == np.float64 and out["k"].dtype == np.float64
    assert out["c"].dtype == object
    assert out["c"].tolist() == ["x", "", ""]
    assert out["n"].iloc[0] == 1.5 and np.isnan(out["n"].iloc[1]) and np.isnan(out["n"].iloc[2])
    assert np.isnan(out["k"].iloc[1])


@pytest.mark.parametrize(
    ("frame", "numeric", "categorical", "match"),
    [
        (pd.DataFrame({"a": [1.0]}), ["a", "b"], [], "'b'"),
        (pd.DataFrame({"a": [1.0]}), ["a"], ["zzz"], "zzz"),
        (pd.DataFrame({"a": ["1", "two"]}), ["a"], [], "'a'.*two"),
        (pd.DataFrame({"a": [1.0, np.inf]}), ["a"], [], "'a'.*infinite"),
        (pd.DataFrame({"a": [1.0]}), ["a"], ["a"], "both numeric and categorical"),
    ],
)
def test_to_model_frame_errors(frame, numeric, categorical, match):
    with pytest.raises(ValueError, match=match):
        to_model_frame(frame, numeric, categorical)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"numeric_imputer": "zero"}, "numeric_imputer.*mean"),
        ({"categorical_imputer": "mode"}, "categorical_imputer.*most_frequent"),
        ({"scale": "minmax"}, "scale.*standard"),
        ({"knn_neighbors": 0}, "knn_neighbors"),
    ],
)
def test_build_preprocessor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_preprocessor(NUMERIC, CATEGORICAL, **kwargs)


@pytest.mark.parametrize(
    ("scale", "estimator", "scaled"),
    [
        ("auto", RandomForestClassifier(), False),
        ("auto", HistGradientBoostingClassifier(), False),
        ("auto", LogisticRegression(), True),
        ("auto", None, True),
        ("standard", RandomForestClassifier(), True),
        ("none", LogisticRegression(), False),
    ],
)
def test_build_preprocessor_scaling_rule(scale, estimator, scaled):
    prep = build_preprocessor(NUMERIC, CATEGORICAL, scale=scale, estimator=estimator)
    num_pipe = dict((name, t) for name, t, _ in prep.transformers)["num"]
    assert any(isinstance(s, StandardScaler) for _, s in num_pipe.steps) is scaled


def test_stable_knn_imputer_breaks_ties_by_training_row():
    fit = np.array([[0.0, 10.0], [2.0, 20.0], [5.0, 30.0]])
    imp = StableKNNImputer(n_neighbors=1).fit(fit)
    # distance 1 to the first two rows (only the first feature is shared): first row wins
    assert imp.transform(np.array([[1.0, np.nan]]))[0, 1] == 10.0
    prep = build_preprocessor(NUMERIC, CATEGORICAL, numeric_imputer="knn", knn_neighbors=4)
    knn = dict((name, t) for name, t, _ in prep.transformers)["num"].named_steps["impute"]
    assert isinstance(knn, StableKNNImputer) and knn.n_neighbors == 4
