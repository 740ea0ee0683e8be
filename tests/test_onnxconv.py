"""Unit tests for loopline.model: features, ONNX export, parity, runtime and feeds."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from loopline.model import feeds as onnx_feeds
from loopline.model.features import (
    CATEGORICAL_IMPUTERS,
    NUMERIC_IMPUTERS,
    StableKNNImputer,
    build_preprocessor,
    to_model_frame,
)
from loopline.model.onnx.convert import convert
from loopline.model.parity import parity
from loopline.model.runtime import OnnxModel

NUMERIC = ["age", "income", "score"]
CATEGORICAL = ["city", "plan"]

ESTIMATORS = {
    "logreg": lambda: LogisticRegression(max_iter=1000),
    "rf": lambda: RandomForestClassifier(n_estimators=8, random_state=0),
    "hgb": lambda: HistGradientBoostingClassifier(max_iter=15, random_state=0),
}


def _raw_frame(n: int, seed: int, unseen: bool = False) -> pd.DataFrame:
    """Raw data: integer, large-valued and fractional numerics with NaN, str with gaps.

    Integer ages give exact KNN distance ties, which StableKNNImputer must resolve
    the same way as the ONNX graph.
    """
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n).astype(float)
    income = rng.gamma(2.0, 40.0, n).round() * 1000.0 + 0.5
    score = rng.normal(0.0, 1.0, n) * 1.0371
    for col in (age, income, score):
        col[rng.random(n) < 0.15] = np.nan
    age[0] = income[0] = score[0] = np.nan  # a row with no numeric value at all
    cities = np.array(["north", "south", "east", "west"], dtype=object)[rng.integers(0, 4, n)]
    cities[rng.random(n) < 0.1] = None
    if unseen:
        cities[1::7] = "atlantis"  # never seen at fit time
    plans = np.array(["basic", "pro", ""], dtype=object)[rng.integers(0, 3, n)]
    return pd.DataFrame(
        {"age": age, "income": income, "score": score, "city": cities, "plan": plans}
    )


def _target(raw: pd.DataFrame, n_classes: int, seed: int) -> np.ndarray:
    """A target that depends on numerics and categories, with noise."""
    rng = np.random.default_rng(seed)
    z = (
        0.03 * raw["age"].fillna(40).to_numpy()
        - 0.00001 * raw["income"].fillna(1e5).to_numpy()
        + raw["score"].fillna(0).to_numpy()
        + (raw["city"] == "north").to_numpy() * 1.0
        + rng.normal(0, 0.7, len(raw))
    )
    if n_classes == 2:
        return np.where(z > np.median(z), "good", "bad")
    return np.digitize(z, np.quantile(z, [1 / 3, 2 / 3])).astype(np.int64)


@pytest.fixture(scope="module")
def frames() -> dict[str, object]:
    train_raw = _raw_frame(240, seed=1)
    test_raw = _raw_frame(80, seed=2, unseen=True)
    return {
        "train": to_model_frame(train_raw, NUMERIC, CATEGORICAL),
        "test": to_model_frame(test_raw, NUMERIC, CATEGORICAL),
        "y2": _target(train_raw, 2, seed=3),
        "y3": _target(train_raw, 3, seed=3),
    }


def _fit(
    frames: dict,
    estimator: str,
    numeric_imputer: str,
    categorical_imputer: str,
    y: str = "y2",
    **kw,
) -> Pipeline:
    """Fit prep + estimator on the training frame."""
    est = ESTIMATORS[estimator]()
    prep = build_preprocessor(
        NUMERIC,
        CATEGORICAL,
        numeric_imputer=numeric_imputer,
        categorical_imputer=categorical_imputer,
        knn_neighbors=3,
        estimator=est,
        **kw,
    )
    return Pipeline([("prep", prep), ("model", est)]).fit(frames["train"], frames[y])


# ------------------------------------------------------------------------ parity passes


@pytest.mark.parametrize("categorical_imputer", CATEGORICAL_IMPUTERS)
@pytest.mark.parametrize("numeric_imputer", NUMERIC_IMPUTERS)
@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_parity_binary(frames, estimator, numeric_imputer, categorical_imputer):
    pipe = _fit(frames, estimator, numeric_imputer, categorical_imputer)
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
    pipe = _fit(frames, estimator, numeric_imputer, "missing", y="y3", scale="standard")
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


# ------------------------------------------------------------------------ parity fails


def test_parity_reports_perturbed_model(frames):
    pipe = _fit(frames, "logreg", "median", "most_frequent")
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
    pipe = _fit(frames, "logreg", "mean", "missing")
    with pytest.raises(ValueError, match="at least one row"):
        parity(pipe, convert(pipe, NUMERIC, CATEGORICAL), frames["test"].iloc[:0])


# ---------------------------------------------------------------------- runtime wrapper


def test_onnx_model_from_path_and_graph_contract(frames, tmp_path):
    pipe = _fit(frames, "hgb", "median", "most_frequent")
    path = tmp_path / "model.onnx"
    path.write_bytes(convert(pipe, NUMERIC, CATEGORICAL))
    model = OnnxModel(path)
    assert model.input_names == NUMERIC + CATEGORICAL
    assert model.classes == ["bad", "good"]
    proba = model.predict_proba(frames["test"])
    assert proba.shape == (len(frames["test"]), 2) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    labels = model.predict(frames["test"])
    assert list(labels) == list(np.asarray(model.classes, dtype=object)[proba.argmax(axis=1)])


def test_convert_gives_the_same_bytes_whatever_the_hash_seed(frames, tmp_path):
    """The same model exports to the same file, so DVC and the registry see no change."""
    import pickle
    import subprocess
    import sys

    pipe = _fit(frames, "hgb", "median", "most_frequent")
    (tmp_path / "pipe.pkl").write_bytes(pickle.dumps(pipe))
    script = ("import pickle, sys, hashlib; from loopline.model.onnx.convert import convert; "
              "p = pickle.load(open(sys.argv[1], 'rb')); "
              f"print(hashlib.sha256(convert(p, {NUMERIC!r}, {CATEGORICAL!r})).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", script, str(tmp_path / "pipe.pkl")],
                              capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout
               for seed in ("1", "2", "3")}
    assert len(digests) == 1


def test_frame_feeds_shapes_and_string_dtype(frames):
    X = frames["test"].copy()
    X["city"] = X["city"].replace("", None).astype("str")  # pandas str dtype, NaN gaps
    X["plan"] = pd.Series([None, np.nan] + X["plan"].tolist()[2:], index=X.index, dtype=object)
    X["age"] = X["age"].astype("Float64")  # nullable float with pd.NA
    feeds = onnx_feeds.from_frame(X, NUMERIC, CATEGORICAL)
    assert feeds["plan"][:2].ravel().tolist() == ["", ""]
    assert np.array_equal(feeds["age"].ravel(), frames["test"]["age"].to_numpy(), equal_nan=True)
    assert list(feeds) == NUMERIC + CATEGORICAL
    assert feeds["age"].shape == (len(X), 1) and feeds["age"].dtype == np.float64
    assert feeds["city"].dtype == object
    assert all(isinstance(v, str) for c in CATEGORICAL for v in feeds[c].ravel())
    assert (feeds["city"].ravel() == frames["test"]["city"].to_numpy()).all()
    with pytest.raises(ValueError, match="plan"):
        onnx_feeds.from_frame(X.drop(columns="plan"), NUMERIC, CATEGORICAL)


def test_frames_records_and_columns_give_the_same_feeds(frames):
    """The gate (frames), /predict (records) and /predict_batch (columns) feed alike."""
    X = frames["test"].iloc[:12]
    records = [{k: v for k, v in row.items() if not (v == "" or (isinstance(v, float) and
                                                                 np.isnan(v)))}
               for row in X.to_dict("records")]  # validated input: missing = left out
    columns = {c: [r.get(c) for r in records] for c in NUMERIC + CATEGORICAL}
    del columns["plan"]  # an absent nullable column is all missing
    want = onnx_feeds.from_frame(X.assign(plan=""), NUMERIC, CATEGORICAL)
    for got in (onnx_feeds.from_records([{k: v for k, v in r.items() if k != "plan"}
                                         for r in records], NUMERIC, CATEGORICAL),
                onnx_feeds.from_columns(columns, len(X), NUMERIC, CATEGORICAL)):
        assert list(got) == list(want)
        for c in NUMERIC:
            assert got[c].dtype == np.float64 and got[c].shape == (len(X), 1)
            assert np.array_equal(got[c], want[c], equal_nan=True), c
        for c in CATEGORICAL:
            assert got[c].dtype == object and got[c].tolist() == want[c].tolist(), c


def test_onnx_model_checks_the_recorded_sha256_and_the_metadata(frames):
    import hashlib

    from onnx import TensorProto, helper

    from loopline.core.errors import LooplineError
    from loopline.model.runtime import IntegrityError

    onx = convert(_fit(frames, "logreg", "mean", "missing"), NUMERIC, CATEGORICAL)
    sha = hashlib.sha256(onx).hexdigest()
    assert OnnxModel(onx, expected={"the registry": sha, "its card": None}).sha256 == sha
    with pytest.raises(IntegrityError, match=f"but the registry records {'0' * 16}"):
        OnnxModel(onx, expected={"the registry": "0" * 64}, label="model v9")
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None, 1])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None, 1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    foreign = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    foreign.ir_version = 8
    with pytest.raises(LooplineError, match="not exported by loopline"):
        OnnxModel(foreign.SerializeToString())
    with pytest.raises(LooplineError, match="onnxruntime cannot load it"):
        OnnxModel(b"not a model")


def test_convert_rejects_unlisted_column(frames):
    pipe = _fit(frames, "logreg", "mean", "missing")
    with pytest.raises(ValueError, match="plan"):
        convert(pipe, NUMERIC, ["city"])


# ------------------------------------------------------------------------ features


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
