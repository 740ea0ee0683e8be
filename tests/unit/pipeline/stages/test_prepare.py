"""Unit tests of the prepare stage: typing, the seeded stratified split, the imputation plan."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from loopline.config.compose import compose
from loopline.config.params import validate_params
from loopline.config.pipeline import DataConfig, FeaturesConfig, Schema, Split
from loopline.core.errors import LooplineError
from loopline.pipeline.stages import ingest
from loopline.pipeline.stages.prepare import coerce, imputation_plan, prepare, split
from loopline.pipeline.tabular import read_table
from tests.helpers import REPO


def labelled(n_bad: int, n_good: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_bad + n_good
    return pd.DataFrame({
        "row_id": [f"r{i:03d}" for i in range(n)],
        "x": rng.normal(size=n),
        "y": ["bad"] * n_bad + ["good"] * n_good,
    })


# ------------------------------------------------------------------- coerce


def test_coerce_types():
    s = Schema.model_validate({"columns": {
        "n": {"type": "integer"}, "f": {"type": "float"},
        "c": {"type": "category"}, "b": {"type": "boolean"}}})
    df = pd.DataFrame({
        "row_id": [1, 2, 3],
        "n": ["10", "20", None],
        "f": [1.5, np.nan, 3],
        "c": [7, None, "x"],
        "b": ["yes", " No ", None],
        "ignored": ["a", "b", "c"],
    })
    out = coerce(df, s)
    assert list(out.columns) == ["row_id", "n", "f", "c", "b"]  # schema order, extras dropped
    assert out["row_id"].tolist() == ["1", "2", "3"]
    assert out["n"].dtype == np.float64
    assert out["n"].tolist()[:2] == [10.0, 20.0] and np.isnan(out["n"].iloc[2])
    assert out["f"].dtype == np.float64 and np.isnan(out["f"].iloc[1])
    assert out["c"].iloc[0] == "7" and out["c"].iloc[2] == "x"
    assert pd.isna(out["c"].iloc[1])
    assert out["b"].tolist()[:2] == [1.0, 0.0] and np.isnan(out["b"].iloc[2])


def test_coerce_real_booleans():
    s = Schema.model_validate({"columns": {"b": {"type": "boolean"}}})
    out = coerce(pd.DataFrame({"row_id": ["a", "b"], "b": [True, False]}), s)
    assert out["b"].tolist() == [1.0, 0.0]


def test_coerce_integer_text_zero_and_one():
    s = Schema.model_validate({"columns": {"n": {"type": "integer"}}})
    out = coerce(pd.DataFrame({"row_id": ["a", "b", "c"], "n": ["0", "1", "2"]}), s)
    assert out["n"].tolist() == [0.0, 1.0, 2.0]


# -------------------------------------------------------------------- split


def test_split_sizes_and_disjoint():
    df = labelled(30, 70)
    train, test = split(df, "y", Split(test_size=0.2, seed=1))
    assert (len(train), len(test)) == (80, 20)
    assert set(train["row_id"]).isdisjoint(test["row_id"])
    assert set(train["row_id"]) | set(test["row_id"]) == set(df["row_id"])
    assert train.index.tolist() == list(range(80))


def test_split_is_stratified():
    df = labelled(30, 70)
    train, test = split(df, "y", Split(test_size=0.2, seed=1))
    assert (test["y"] == "bad").sum() == 6
    assert (train["y"] == "bad").sum() == 24


def test_split_tests_every_class_even_one_too_rare_for_its_share():
    df = pd.concat([labelled(30, 568), labelled(2, 0, seed=1).assign(y="tiny")], ignore_index=True)
    df["row_id"] = [f"r{i}" for i in range(len(df))]
    train, test = split(df, "y", Split(test_size=0.2, seed=1))
    assert len(test) == 120 and (test["y"] == "tiny").sum() == 1 and (train["y"] == "tiny").sum() == 1
    assert (test["y"] == "bad").sum() == 6  # its share; the row comes from the largest class
    assert (test["y"] == "good").sum() == 113


def test_split_same_seed_same_rows_other_seed_other_rows():
    df = labelled(30, 70)
    a = split(df, "y", Split(test_size=0.2, seed=5))[1]["row_id"].tolist()
    b = split(df, "y", Split(test_size=0.2, seed=5))[1]["row_id"].tolist()
    c = split(df, "y", Split(test_size=0.2, seed=6))[1]["row_id"].tolist()
    assert a == b
    assert set(a) != set(c)


def test_split_without_stratify_can_unbalance():
    df = labelled(30, 70)
    tests = [split(df, "y", Split(test_size=0.2, seed=s, stratify=False))[1] for s in range(10)]
    counts = {int((t["y"] == "bad").sum()) for t in tests}
    assert counts != {6}  # without stratification the test share of 'bad' varies with the seed


def test_split_one_row_class_cannot_stratify():
    df = labelled(1, 20)
    with pytest.raises(LooplineError, match=r"cannot stratify .* 'y': class 'bad' has only 1 row"):
        split(df, "y", Split(test_size=0.2))
    train, test = split(df, "y", Split(test_size=0.2, stratify=False))
    assert len(train) + len(test) == 21


def test_split_test_too_small_for_classes():
    df = labelled(5, 5)
    with pytest.raises(LooplineError, match="cannot split the data with data.split"):
        split(df, "y", Split(test_size=0.1))


# ---------------------------------------------------------- imputation plan


def _plan_frames():
    train = pd.DataFrame({
        "num": [1.0, 2.0, 3.0, 100.0, np.nan],
        "cat": ["b", "a", "b", None, "a"],
        "tie": ["z", "y", None, None, None],
        "empty": [None, None, None, None, None],
    })
    test = pd.DataFrame({"num": [np.nan, np.nan, 1.0], "cat": ["a", None, "b"],
                         "tie": ["y", "z", "y"], "empty": [None, "q", None]})
    return train, test


def test_imputation_plan_mean_and_most_frequent():
    train, test = _plan_frames()
    plan = imputation_plan(train, test, ["num"], ["cat", "tie", "empty"],
                           FeaturesConfig(numeric_imputer="mean",
                                          categorical_imputer="most_frequent"))
    assert plan["num"] == {"kind": "numeric", "strategy": "mean", "fill": 26.5,
                           "missing_train": 1, "missing_test": 2}
    assert plan["cat"]["fill"] == "a"  # tie between a and b: the smallest, like SimpleImputer
    assert plan["cat"]["missing_train"] == 1 and plan["cat"]["missing_test"] == 1
    assert plan["tie"]["fill"] == "y"
    assert plan["empty"]["fill"] == "missing"
    assert plan["empty"]["kind"] == "categorical"


def test_imputation_plan_median_matches_simple_imputer():
    from sklearn.impute import SimpleImputer

    train, test = _plan_frames()
    plan = imputation_plan(train, test, ["num"], [], FeaturesConfig(numeric_imputer="median"))
    assert plan["num"]["fill"] == 2.5
    sk = SimpleImputer(strategy="median").fit(train[["num"]]).statistics_[0]
    assert plan["num"]["fill"] == sk


def test_imputation_plan_missing_category_and_knn():
    train, test = _plan_frames()
    plan = imputation_plan(train, test, ["num"], ["cat"],
                           FeaturesConfig(numeric_imputer="knn", knn_neighbors=7,
                                          categorical_imputer="missing"))
    assert plan["cat"]["fill"] == "missing"
    assert plan["cat"]["strategy"] == "missing"
    assert plan["num"]["fill"] == "mean of 7 nearest rows"
    assert plan["num"]["strategy"] == "knn"


def test_imputation_plan_uses_train_only():
    train, test = _plan_frames()
    test = test.assign(num=[1000.0, 1000.0, 1000.0])
    plan = imputation_plan(train, test, ["num"], [], FeaturesConfig(numeric_imputer="mean"))
    assert plan["num"]["fill"] == 26.5


# ---------------------------------------------------------------- prepare


def _tiny_config(**split_kw) -> DataConfig:
    return DataConfig.model_validate({
        "name": "t", "source": "x.csv", "target": "y", "positive_class": "bad",
        "split": {"test_size": 0.25, "seed": 3, **split_kw},
        "schema": {"columns": {"y": {"type": "category"}, "x": {"type": "float"},
                               "k": {"type": "category"}}},
    })


def test_prepare_drops_rows_without_target_and_reports():
    df = labelled(20, 20).assign(k=["u", "v"] * 20)
    df.loc[[0, 39], "y"] = None
    train, test, report = prepare(df, _tiny_config(), FeaturesConfig())
    assert len(train) + len(test) == 38
    assert report["train_rows"] == len(train) and report["test_rows"] == len(test)
    assert report["features"] == {"numeric": ["x"], "categorical": ["k"]}
    assert set(report["imputation"]) == {"x", "k"}
    assert report["class_balance"]["test"] == {"bad": 0.5, "good": 0.5}
    assert "r000" not in set(train["row_id"]) | set(test["row_id"])


def test_prepare_real_credit_data_keeps_class_balance():
    params = validate_params(yaml.safe_load(compose(REPO)))
    raw = ingest.ingest(read_table(REPO / params.data.source), None, None)
    train, test, report = prepare(raw, params.data, params.features)
    assert (len(train), len(test)) == (3563, 891)
    overall = (raw["Status"] == "bad").mean()
    assert report["class_balance"]["train"]["bad"] == pytest.approx(overall, abs=0.002)
    assert report["class_balance"]["test"]["bad"] == pytest.approx(overall, abs=0.002)
    assert train["Income"].dtype == np.float64
    assert report["imputation"]["Income"]["missing_train"] + \
        report["imputation"]["Income"]["missing_test"] == int(raw["Income"].isna().sum())
    again = prepare(raw, params.data, params.features)[1]
    assert again["row_id"].tolist() == test["row_id"].tolist()


def test_split_keeps_rows_on_their_side_when_rows_are_appended():
    """Retraining appends labelled rows: earlier rows must not move from train to test (or a
    champion would be evaluated on rows it was trained on)."""
    df = labelled(300, 700)
    more = labelled(90, 210)
    more["row_id"] = [f"new-{i}" for i in range(len(more))]
    before = split(df, "y", Split(test_size=0.2, seed=3))
    after = split(pd.concat([df, more], ignore_index=True), "y", Split(test_size=0.2, seed=3))
    assert (len(after[0]), len(after[1])) == (1040, 260)
    assert (after[1]["y"] == "bad").sum() == 78
    old_test, new_test = set(before[1]["row_id"]), set(after[1]["row_id"])
    moved = len(old_test - new_test) + len(set(before[0]["row_id"]) & new_test)
    assert moved <= 20, f"{moved} of 1000 earlier rows changed side"


def test_time_split_trains_on_earlier_rows_and_tests_on_the_latest():
    from tests.helpers import synthetic

    df, target = synthetic.multiclass_with_date(200)
    raw = ingest.ingest(df.sample(frac=1.0, random_state=0), None, "signup_date")  # shuffled file
    train, test = split(raw, target, Split(method="time", test_size=0.25))
    assert len(test) == 50 and len(train) == 150
    assert train["signup_date"].max() <= test["signup_date"].min()
    with pytest.raises(ValueError, match="split.method 'time' needs order_column"):
        DataConfig.model_validate({"name": "d", "source": "d.csv", "target": "y", "positive_class": "a",
                                   "split": {"method": "time"},
                                   "schema": {"columns": {"y": {"type": "category",
                                                                "categories": ["a", "b"]}}}})
