"""The gate's drift tests (model/drift.py, ``sized``): independent splits of one data set do
not drift by chance at any size, and a real shift is found."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loopline.model.drift import HOMOGENEITY, column_drift, sized_method
from tests.helpers import synthetic

SIGNIFICANCE = 0.01  # conf/gate's default


@pytest.fixture(scope="module")
def pool() -> pd.DataFrame:
    """Numeric (continuous, few whole values), categorical and gappy columns of the synthetic sets."""
    odd, _ = synthetic.odd_names(n=6000, seed=11)
    wide, _ = synthetic.wide_with_gaps(n=6000, cols=8, seed=12)
    return pd.concat([odd.drop(columns="label?"), wide[["feat_00", "feat_03", "count_int"]]], axis=1)


def _split(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    shuffled = frame.sample(frac=1.0, random_state=seed)
    cut = int(len(frame) * 0.8)  # prepare's default test_size 0.2
    return shuffled.iloc[:cut], shuffled.iloc[cut:]


@pytest.mark.parametrize("rows", [100, 200, 500, 2000])
def test_false_alarms_stay_under_five_percent_per_feature_at_any_size(pool, rows):
    repeats = 100
    alarms = dict.fromkeys(pool.columns, 0)
    for r in range(repeats):
        sample = pool.sample(rows, random_state=1000 * rows + r)  # independent samples
        train, test = _split(sample, r)
        for col in pool.columns:
            numeric = pd.api.types.is_numeric_dtype(pool[col])
            d = column_drift(col, train[col], test[col], numeric=numeric, sized=True,
                             significance=SIGNIFICANCE)
            alarms[col] += d.drifted
    rates = {c: n / repeats for c, n in alarms.items()}
    assert max(rates.values()) <= 0.05, rates


def test_a_real_shift_is_found_at_small_and_large_sizes():
    rng = np.random.default_rng(0)
    for n in (150, 5000):
        ref, cur = rng.normal(size=n), rng.normal(0.8, 1.0, size=n // 4)
        assert column_drift("x", ref, cur, numeric=True, sized=True,
                            significance=SIGNIFICANCE).drifted
        cats = np.array(["a", "b", "c"], dtype=object)
        d = column_drift("k", rng.choice(cats, n, p=[0.6, 0.3, 0.1]),
                         rng.choice(cats, n // 4, p=[0.2, 0.3, 0.5]), numeric=False, sized=True,
                         significance=SIGNIFICANCE)
        assert d.drifted, d


def test_tests_while_a_split_is_small_distances_once_both_are_large():
    assert sized_method(5000, 400, 100, numeric=True) == "ks"
    assert sized_method(5000, 400, 4, numeric=True) == HOMOGENEITY
    assert sized_method(400, 400, 3, numeric=False) == HOMOGENEITY
    assert sized_method(8000, 2000, 100, numeric=True) == "wasserstein"
    assert sized_method(8000, 2000, 3, numeric=False) == "jensenshannon"
    d = column_drift("k", ["a"] * 50, ["a"] * 10, numeric=False, sized=True)
    assert d.method == HOMOGENEITY and d.value == 1.0 and not d.drifted  # one value: no drift
