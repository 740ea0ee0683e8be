"""onnxruntime feeds from frames, records and columns (model/feeds.py), and the private
pandas method the frame feeds use."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loopline.model import feeds as onnx_feeds
from tests.helpers.contract import GOOD
from tests.helpers.model_data import (
    CATEGORICAL,
    NUMERIC,
    SMALL_CATEGORICAL,
    SMALL_NUMERIC,
    small_model_frame,
)


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


def test_feeds_mark_missing_values_for_the_imputers() -> None:
    feeds = onnx_feeds.from_records([GOOD, {"Age": 40, "Records": "yes"}], ["Age", "Income"],
                                    ["Home"])
    assert feeds["Age"].dtype == np.float64 and feeds["Age"].shape == (2, 1)
    assert np.isnan(feeds["Income"][1, 0]) and feeds["Income"][0, 0] == 120.5
    assert feeds["Home"].tolist() == [["rent"], [""]]


# ---------------------------------------------------- pandas' private _get_column_array


@pytest.mark.parametrize("dtype", ["float64", "Float64", "object", "str"])
def test_pandas_get_column_array_returns_the_column(dtype: str) -> None:
    values = [1.5, None, 3.0] if dtype in ("float64", "Float64") else ["x", None, "z"]
    X = pd.DataFrame({"other": [0, 1, 2], "col": pd.Series(values, dtype=dtype)})
    getter = getattr(X, "_get_column_array", None)
    assert getter is not None, ("pandas DataFrame._get_column_array is gone: "
                                "loopline.model.feeds falls back to X[name].array (slower)")
    got = getter(X.columns.get_loc("col"))
    want = X["col"].array
    assert type(got) in (np.ndarray, type(want)), f"_get_column_array returns {type(got)}"
    assert pd.Series(got).equals(pd.Series(want)), "_get_column_array returns other values"


def test_frame_feeds_are_the_same_without_the_private_pandas_method(monkeypatch) -> None:
    X, _ = small_model_frame(20)
    X["c"] = X["c"].replace("", None).astype("str")
    fast = onnx_feeds.from_frame(X, SMALL_NUMERIC, SMALL_CATEGORICAL)
    monkeypatch.delattr(pd.DataFrame, "_get_column_array")
    slow = onnx_feeds.from_frame(X, SMALL_NUMERIC, SMALL_CATEGORICAL)
    for name in (*SMALL_NUMERIC, *SMALL_CATEGORICAL):
        assert fast[name].dtype == slow[name].dtype and fast[name].shape == slow[name].shape
        assert np.array_equal(fast[name], slow[name], equal_nan=fast[name].dtype.kind == "f")
