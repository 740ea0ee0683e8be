"""Unit tests of the train stage: search spaces, search objects, scorers, real fits, Dask."""

from __future__ import annotations

import copy
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from loopline.config.params import Params, validate_params
from loopline.config.pipeline import Distribution, ModelConfig, SearchConfig
from loopline.core.errors import LooplineError
from loopline.pipeline.stages import train as tr

BASE = {
    "artifact": "synthetic-model",
    "seed": 0,
    "data": {
        "name": "syn", "source": "syn.csv", "target": "y", "positive_class": "bad",
        "split": {"test_size": 0.25, "seed": 0},
        "schema": {"columns": {
            "y": {"type": "category", "categories": ["bad", "good"], "nullable": False},
            "x1": {"type": "float"},
            "x2": {"type": "float"},
            "k": {"type": "category", "categories": ["u", "v", "w"]},
        }},
    },
    "features": {"numeric_imputer": "median", "categorical_imputer": "most_frequent",
                 "scale": "auto"},
    "model": {
        "name": "logreg",
        "estimator": {"_target_": "sklearn.linear_model.LogisticRegression", "max_iter": 500},
        "search_space": {"C": {"dist": "loguniform", "low": 0.001, "high": 100.0}},
    },
    "search": {"method": "random", "n_iter": 2, "cv": 2, "scoring": "roc_auc", "n_jobs": 1,
               "backend": "local", "dask_scheduler": None},
    "evaluate": {"slice_column": None},
    "gate": {"min": {"roc_auc": 0.5}},
}


def make_params(search: dict | None = None, model: dict | None = None, seed: int = 0) -> Params:
    data = copy.deepcopy(BASE)
    data["seed"] = seed
    data["search"].update(search or {})
    if model is not None:
        data["model"] = model
    return validate_params(data)


HGB_LISTS = {
    "name": "hgb",
    "estimator": {"_target_": "sklearn.ensemble.HistGradientBoostingClassifier", "max_iter": 10},
    "search_space": {"learning_rate": [0.03, 0.06, 0.1], "max_leaf_nodes": [7, 15, 31],
                     "min_samples_leaf": [20, 40], "l2_regularization": [0.0, 1.0]},
}


def synthetic(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """A learnable binary problem with gaps in a numeric and a categorical feature."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    k = rng.choice(["u", "v", "w"], size=n).astype(object)
    logit = 2.0 * x1 + np.where(k == "u", 1.0, 0.0)
    y = np.where(logit + rng.normal(scale=0.7, size=n) > 0.3, "bad", "good")
    x2[rng.choice(n, 10, replace=False)] = np.nan
    k[rng.choice(n, 8, replace=False)] = None
    return pd.DataFrame({"row_id": [f"r{i}" for i in range(n)], "y": y, "x1": x1, "x2": x2, "k": k})


def xy(params: Params, n: int = 120):
    from loopline.pipeline.tabular import xy as frames_xy

    return frames_xy(synthetic(n), params)


def plain_pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline([("model", LogisticRegression(max_iter=500))])


# -------------------------------------------------------------- search space


def test_to_distribution_list_passthrough():
    values = [1, 2, 3]
    assert tr.to_distribution(values) is values


def test_to_distribution_uniform_support():
    d = tr.to_distribution(Distribution(dist="uniform", low=0.2, high=0.7))
    assert d.support() == pytest.approx((0.2, 0.7))
    assert d.cdf(0.45) == pytest.approx(0.5)


def test_to_distribution_loguniform_support():
    d = tr.to_distribution(Distribution(dist="loguniform", low=0.001, high=100.0))
    assert d.support() == pytest.approx((0.001, 100.0))
    assert d.cdf(1.0) == pytest.approx(0.6, abs=1e-9)  # log-uniform: 3 of 5 decades


def test_to_distribution_randint_inclusive_high():
    d = tr.to_distribution(Distribution(dist="randint", low=2, high=5))
    samples = set(d.rvs(size=400, random_state=0).tolist())
    assert samples == {2, 3, 4, 5}


def test_search_space_prefixes_model_step():
    model = ModelConfig(name="m", estimator={"_target_": "sklearn.linear_model.LogisticRegression"},
                        search_space={"C": [0.1, 1.0],
                                      "tol": {"dist": "uniform", "low": 1e-5, "high": 1e-3}})
    space = tr.search_space(model)
    assert set(space) == {"model__C", "model__tol"}
    assert space["model__C"] == [0.1, 1.0]
    assert isinstance(space["model__tol"], stats._distn_infrastructure.rv_continuous_frozen)


# ------------------------------------------------------------------ build_search


def test_build_search_none_and_empty_space():
    assert tr.build_search(plain_pipeline(), make_params({"method": "none"}), 2) is None
    empty = dict(BASE["model"], search_space={})
    assert tr.build_search(plain_pipeline(), make_params(model=empty), 2) is None


def test_build_search_grid():
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    params = make_params({"method": "grid", "cv": 4, "n_jobs": 2}, model=HGB_LISTS, seed=9)
    s = tr.build_search(plain_pipeline(), params, 2)
    assert type(s) is GridSearchCV
    assert isinstance(s.cv, StratifiedKFold)
    assert (s.cv.n_splits, s.cv.shuffle, s.cv.random_state) == (4, True, 9)
    assert s.n_jobs == 2 and s.error_score == "raise" and s.refit is True
    assert s.scoring == "roc_auc"
    assert s.param_grid["model__max_leaf_nodes"] == [7, 15, 31]


def test_build_search_random_caps_iterations_at_grid_size():
    from sklearn.model_selection import RandomizedSearchCV

    s = tr.build_search(plain_pipeline(), make_params({"n_iter": 100}, model=HGB_LISTS, seed=3), 2)
    assert type(s) is RandomizedSearchCV
    assert s.n_iter == 36  # 3 * 3 * 2 * 2
    assert s.random_state == 3
    s = tr.build_search(plain_pipeline(), make_params({"n_iter": 5}, model=HGB_LISTS), 2)
    assert s.n_iter == 5


def test_build_search_random_with_distribution_keeps_n_iter():
    s = tr.build_search(plain_pipeline(), make_params({"n_iter": 100}), 2)
    assert s.n_iter == 100


def test_build_search_halving_grid_or_random():
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingGridSearchCV, HalvingRandomSearchCV

    small = tr.build_search(plain_pipeline(),
                            make_params({"method": "halving", "n_iter": 40, "halving_factor": 2},
                                        model=HGB_LISTS), 2)
    assert type(small) is HalvingGridSearchCV
    assert small.factor == 2
    big = tr.build_search(plain_pipeline(),
                          make_params({"method": "halving", "n_iter": 12}, model=HGB_LISTS,
                                      seed=4), 2)
    assert type(big) is HalvingRandomSearchCV
    assert big.n_candidates == 12 and big.factor == 3 and big.random_state == 4
    dist = tr.build_search(plain_pipeline(), make_params({"method": "halving", "n_iter": 6}), 2)
    assert type(dist) is HalvingRandomSearchCV and dist.n_candidates == 6


def test_build_search_multiclass_roc_auc():
    s = tr.build_search(plain_pipeline(), make_params(), 3)
    from loopline.model.metrics import macro_ovr_roc_auc

    assert s.scoring is macro_ovr_roc_auc


# --------------------------------------------------------------------- summarise


def test_summarise_grid_search_ranks_and_strips_prefix():
    from sklearn.model_selection import GridSearchCV

    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 2))
    y = np.where(X[:, 0] > 0, "bad", "good")
    search = GridSearchCV(plain_pipeline(), {"model__C": [0.0001, 1.0, 10.0]}, cv=3).fit(X, y)
    cfg = SearchConfig(method="grid", cv=3)
    s = tr.summarise(search, 1.234, "local", cfg)
    assert s["n_candidates"] == 3
    assert s["best_params"] == {"C": search.best_params_["model__C"]}
    assert s["best_score"] == pytest.approx(search.best_score_, abs=1e-6)
    assert [c["rank"] for c in s["candidates"]] == sorted(c["rank"] for c in s["candidates"])
    assert s["candidates"][0]["params"] == s["best_params"]
    assert s["fit_seconds"] == 1.23 and s["backend"] == "local"


def test_summarise_halving_keeps_one_row_per_candidate():
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingGridSearchCV

    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 2))
    y = np.where(X[:, 0] + rng.normal(size=120) > 0, "bad", "good")
    grid = {"model__C": [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]}
    search = HalvingGridSearchCV(plain_pipeline(), grid, factor=2, cv=2, random_state=0).fit(X, y)
    assert search.n_iterations_ >= 2
    s = tr.summarise(search, 0.0, "local", SearchConfig(method="halving", cv=2))
    assert s["n_candidates"] == 6
    assert len({repr(c["params"]) for c in s["candidates"]}) == 6
    assert s["best_params"] == {"C": search.best_params_["model__C"]}


def test_summarise_none():
    s = tr.summarise(None, 0.5, "local", SearchConfig(method="none"))
    assert s["best_params"] == {} and s["best_score"] is None and s["candidates"] == []


# -------------------------------------------------------------- train (real fit)


@pytest.fixture(scope="module")
def features_module():
    """features.py is written concurrently by someone else: wait for it instead of stubbing."""
    import importlib

    deadline = time.monotonic() + 900
    while True:
        try:
            return importlib.import_module("loopline.model.features")
        except ModuleNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(10)


def test_train_method_none_fits_pipeline(features_module):
    params = make_params({"method": "none"})
    X, y = xy(params)
    model, summary = tr.train(X, y, params)
    assert summary["method"] == "none" and summary["best_params"] == {}
    assert summary["backend"] == "local"
    assert list(model.classes_) == ["bad", "good"]
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 2)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert (model.predict(X) == y).mean() > 0.75  # learnable problem


def test_train_random_search_is_seeded(features_module):
    params = make_params({"method": "random", "n_iter": 2, "cv": 2})
    X, y = xy(params)
    model, summary = tr.train(X, y, params)
    assert summary["method"] == "random" and summary["n_candidates"] == 2
    assert 0.001 <= summary["best_params"]["C"] <= 100.0
    assert summary["best_score"] == max(c["mean_score"] for c in summary["candidates"])
    assert summary["best_params"]["C"] == model.named_steps["model"].C
    _, again = tr.train(X, y, params)
    assert again["best_params"] == summary["best_params"]
    assert again["best_score"] == summary["best_score"]
    _, other_seed = tr.train(X, y, make_params({"method": "random", "n_iter": 2, "cv": 2}, seed=1))
    assert {c["params"]["C"] for c in other_seed["candidates"]} != \
        {c["params"]["C"] for c in summary["candidates"]}


def test_train_single_class_is_loopline_error(features_module):
    params = make_params({"method": "none"})
    X, y = xy(params)
    with pytest.raises(LooplineError, match=r"training logreg failed"):
        tr.train(X, np.full(len(y), "good"), params)


# ------------------------------------------------------------------------- Dask

# Fresh processes here import scikit-learn from source (no bytecode cache), which takes
# seconds; the cluster fixture starts that import on both workers in the background, and
# the unreachable-scheduler test (which mostly waits on its 10 s connect timeout) runs
# first, so the two overlap.
_WARM_UP = ("import sklearn.model_selection, sklearn.linear_model, sklearn.compose, "
            "sklearn.impute, sklearn.preprocessing, sklearn.pipeline, loopline.model.features")


@pytest.fixture(scope="class")
def dask_cluster(features_module):
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    client = Client(cluster, set_as_default=False)
    try:
        warm = [client.submit(exec, _WARM_UP, workers=[w], pure=False)
                for w in client.scheduler_info()["workers"]]
        yield cluster
        del warm
    finally:
        client.close()
        cluster.close()


@pytest.mark.usefixtures("dask_cluster")
class TestDask:
    def test_unreachable_scheduler_names_address(self):
        cfg = SearchConfig(backend="dask", dask_scheduler="tcp://127.0.0.1:1")
        match = r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:1"
        with pytest.raises(LooplineError, match=match), tr.joblib_backend(cfg):
            pass

    def test_train_on_dask_matches_local(self, dask_cluster):
        search = {"method": "random", "n_iter": 3, "cv": 2}
        # local runs sequentially (n_jobs=1): same candidates and folds, no process start-up
        local_params = make_params({**search, "n_jobs": 1})
        dask_params = make_params({**search, "n_jobs": -1, "backend": "dask",
                                   "dask_scheduler": dask_cluster.scheduler_address})
        X, y = xy(local_params)
        _, local = tr.train(X, y, local_params)
        model, remote = tr.train(X, y, dask_params)
        assert local["backend"] == "local"
        assert remote["backend"].startswith("dask (")
        assert dask_cluster.scheduler_address in remote["backend"]
        assert "2 workers" in remote["backend"]
        assert remote["best_params"] == local["best_params"]
        assert remote["best_score"] == pytest.approx(local["best_score"], abs=1e-9)
        assert [c["params"] for c in remote["candidates"]] == \
            [c["params"] for c in local["candidates"]]
        assert model.predict_proba(X).shape == (len(X), 2)
