"""The fast drift tests agree with scipy and with Evidently's default DataDriftPreset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from loopline.monitoring.drift import column_drift, dataset_drift, default_method


def test_wasserstein_and_jensenshannon_match_scipy() -> None:
    rng = np.random.default_rng(3)
    ref, cur = rng.normal(size=5000), rng.normal(0.2, 1.3, size=7000)
    d = column_drift("x", ref, cur, numeric=True)
    assert d.method == "wasserstein"
    assert d.value == pytest.approx(stats.wasserstein_distance(ref, cur) / np.std(ref), rel=1e-12)
    rc = rng.choice(["a", "b", "c"], 3000, p=[0.5, 0.3, 0.2]).astype(object)
    cc = rng.choice(["a", "b", "c", "d"], 4000, p=[0.3, 0.3, 0.3, 0.1]).astype(object)
    d = column_drift("k", rc, cc, numeric=False)
    keys = ["a", "b", "c", "d"]
    p = np.array([np.mean(rc == k) for k in keys])
    q = np.array([np.mean(cc == k) for k in keys])
    assert d.method == "jensenshannon" and d.value == pytest.approx(distance.jensenshannon(p, q))


def test_missing_values_are_dropped_and_empty_columns_are_not_drift() -> None:
    ref = np.array([1.0, 2.0, np.nan, 3.0] * 400)
    assert column_drift("x", ref, ref[::-1], numeric=True).drifted is False
    empty = column_drift("x", ref, np.full(10, np.nan), numeric=True)
    assert empty.drifted is False and empty.current_rows == 0


def test_default_methods_follow_evidently() -> None:
    assert default_method(1000, 50, numeric=True) == "ks"
    assert default_method(1000, 4, numeric=True) == "chisquare"
    assert default_method(1000, 2, numeric=False) == "z"
    assert default_method(1001, 6, numeric=True) == "wasserstein"
    assert default_method(1001, 5, numeric=True) == "jensenshannon"
    assert default_method(1001, 50, numeric=False) == "jensenshannon"


@pytest.mark.parametrize("ref_rows", [800, 3000])
def test_verdicts_and_values_match_evidentlys_default_preset(ref_rows: int) -> None:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    rng = np.random.default_rng(ref_rows)
    numeric, categorical = ["a", "b", "few"], ["k", "two"]

    def frame(n: int, shift: float) -> pd.DataFrame:
        df = pd.DataFrame({
            "a": rng.normal(shift, 1, n), "b": rng.exponential(2, n),
            "few": rng.integers(0, 3 + int(shift > 0), n).astype(float),
            "k": rng.choice(np.array(["x", "y", "z"], dtype=object), n,
                            p=[0.5, 0.3, 0.2] if shift == 0 else [0.3, 0.3, 0.4]),
            "two": rng.choice(np.array(["p", "q"], dtype=object), n)})
        df.loc[rng.random(n) < 0.05, "b"] = np.nan
        return df

    ref, cur = frame(ref_rows, 0.0), frame(2000, 0.4)
    ours = {d.column: d for d in dataset_drift(ref, cur, numeric, categorical)}
    dd = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snap = Report([DataDriftPreset(columns=numeric + categorical)]).run(
        current_data=Dataset.from_pandas(cur, data_definition=dd),
        reference_data=Dataset.from_pandas(ref, data_definition=dd))
    seen = 0
    for m in snap.dict()["metrics"]:
        conf = m["config"]
        if conf["type"].endswith(":ValueDrift"):
            d = ours[conf["column"]]
            assert float(m["value"]) == pytest.approx(d.value, rel=1e-6, abs=1e-9), conf
            assert d.threshold == pytest.approx(conf["threshold"])
            seen += 1
    assert seen == 5
    assert ours["a"].drifted and ours["k"].drifted and not ours["two"].drifted
