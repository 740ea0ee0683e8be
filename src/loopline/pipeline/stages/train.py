"""train: hyper-parameter search over one scikit-learn Pipeline (imputation → model).

The estimator comes from ``model.estimator._target_``; the search (grid, random, successive
halving or none) from conf/search, with stratified, seeded CV folds. The search runs on a
joblib backend from config: processes on this machine by default, or a Dask cluster
(``search.backend: dask`` with ``search.dask_scheduler``), where each CV fit is a task.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopline.config.params import Params
from loopline.config.pipeline import Distribution, ModelConfig, SearchConfig, check_estimator
from loopline.core.errors import LooplineError
from loopline.core.files import Outputs
from loopline.core.layout import MODEL_JOBLIB, SEARCH_JSON, TIMINGS_JSON, Layout
from loopline.model.metrics import scorer
from loopline.pipeline.runner import prefetch_later_imports, search_pool_ready
from loopline.pipeline.tabular import feature_columns, load_split, xy


def build_pipeline(params: Params):
    """The unfitted Pipeline: preprocessing (from conf/features) then the estimator."""
    from sklearn.pipeline import Pipeline

    from loopline.model.features import build_preprocessor

    cls = check_estimator(params.model)
    kwargs = {k: v for k, v in params.model.estimator.items() if k != "_target_"}
    try:
        estimator = cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise LooplineError(f"cannot build {cls.__name__} from model.estimator: {err}") from None
    numeric, categorical = feature_columns(params)
    f = params.features
    prep = build_preprocessor(numeric, categorical, numeric_imputer=f.numeric_imputer,
                              knn_neighbors=f.knn_neighbors, categorical_imputer=f.categorical_imputer,
                              scale=f.scale, estimator=estimator)
    return Pipeline([("prep", prep), ("model", estimator)])


def to_distribution(value: list | Distribution) -> Any:
    """A search-space entry as scikit-learn expects it (a list or a scipy distribution)."""
    if isinstance(value, list):
        return value
    from scipy import stats

    if value.dist == "uniform":
        return stats.uniform(value.low, value.high - value.low)
    if value.dist == "loguniform":
        return stats.loguniform(value.low, value.high)
    return stats.randint(int(value.low), int(value.high) + 1)


def search_space(model: ModelConfig) -> dict[str, Any]:
    return {f"model__{k}": to_distribution(v) for k, v in model.search_space.items()}


def build_search(pipeline, params: Params, n_classes: int):
    """The configured search object, or None for ``method: none``."""
    from sklearn.model_selection import StratifiedKFold

    cfg: SearchConfig = params.search
    space = search_space(params.model)
    if cfg.method == "none" or not space:
        return None
    common = dict(cv=StratifiedKFold(cfg.cv, shuffle=True, random_state=params.seed),
                  scoring=scorer(cfg.scoring, params.data.positive_class, n_classes),
                  n_jobs=cfg.n_jobs, refit=True, error_score="raise")
    all_lists = all(isinstance(v, list) for v in space.values())
    if cfg.method == "grid":
        from sklearn.model_selection import GridSearchCV

        return GridSearchCV(pipeline, space, **common)
    if cfg.method == "random":
        from sklearn.model_selection import RandomizedSearchCV

        n_iter = min(cfg.n_iter, _grid_size(space)) if all_lists else cfg.n_iter
        return RandomizedSearchCV(pipeline, space, n_iter=n_iter, random_state=params.seed, **common)
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingGridSearchCV, HalvingRandomSearchCV

    if all_lists and _grid_size(space) <= cfg.n_iter:
        return HalvingGridSearchCV(pipeline, space, factor=cfg.halving_factor,
                                   random_state=params.seed, **common)
    return HalvingRandomSearchCV(pipeline, space, n_candidates=cfg.n_iter, factor=cfg.halving_factor,
                                 random_state=params.seed, **common)


def _grid_size(space: dict[str, list]) -> int:
    return int(np.prod([len(v) for v in space.values()]))


@contextlib.contextmanager
def joblib_backend(cfg: SearchConfig) -> Iterator[str]:
    """Run the search's joblib work locally or on the configured Dask scheduler."""
    import joblib

    if cfg.backend == "local":
        with joblib.parallel_config(backend="loky"):
            yield "local"
        return
    try:
        from dask.distributed import Client
    except ImportError:  # pragma: no cover - dask is a dependency
        raise LooplineError("search.backend is dask but dask.distributed is not installed") from None
    try:
        client = Client(cfg.dask_scheduler, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        raise LooplineError(f"cannot reach the Dask scheduler at {cfg.dask_scheduler}: {err}") from None
    try:
        with client.as_current(), joblib.parallel_config(backend="dask"):
            yield f"dask ({cfg.dask_scheduler}, {len(client.scheduler_info().get('workers', {}))} workers)"
    finally:
        client.close()


def summarise(search, elapsed: float, backend: str, cfg: SearchConfig) -> dict:
    """best params, best score and the ranked candidates of a fitted search."""
    if search is None:
        return {"method": "none", "backend": backend, "fit_seconds": round(elapsed, 2),
                "best_params": {}, "best_score": None, "candidates": []}
    res = pd.DataFrame(search.cv_results_)
    if "iter" in res:  # successive halving: keep each candidate's last (largest) round
        res = res.sort_values("iter").groupby(res["params"].map(repr), sort=False).tail(1)
    res = res.sort_values(["rank_test_score", "mean_test_score"], ascending=[True, False])
    candidates = [
        {"rank": int(r.rank_test_score),
         "params": {k.removeprefix("model__"): v for k, v in r.params.items()},
         "mean_score": round(float(r.mean_test_score), 6),
         "std_score": round(float(r.std_test_score), 6),
         "mean_fit_seconds": round(float(r.mean_fit_time), 4)}
        for r in res.head(25).itertuples()
    ]
    best = {k.removeprefix("model__"): v for k, v in search.best_params_.items()}
    return {"method": cfg.method, "scoring": cfg.scoring, "cv": cfg.cv, "backend": backend,
            "n_candidates": int(len(res)), "fit_seconds": round(elapsed, 2),
            "best_params": best, "best_score": round(float(search.best_score_), 6),
            "best_std": candidates[0]["std_score"] if candidates else None,
            "candidates": candidates}


def split_timings(summary: dict) -> tuple[dict, dict]:
    """(the summary without wall-clock times and where it ran, those): reports/search.json is committed
    and must be the same bytes on every machine that reproduces the commit, so the times
    go to .loopline/timings.json, which Git ignores."""
    doc = {k: v for k, v in summary.items() if k not in ("fit_seconds", "backend")}
    doc["candidates"] = [{k: v for k, v in c.items() if k != "mean_fit_seconds"}
                         for c in summary.get("candidates", [])]
    timings = {"fit_seconds": summary.get("fit_seconds"), "backend": summary.get("backend"),
               "candidates": [{"params": c["params"], "mean_fit_seconds": c.get("mean_fit_seconds")}
                              for c in summary.get("candidates", [])]}
    return doc, timings


def train(X: pd.DataFrame, y: np.ndarray, params: Params) -> tuple[Any, dict]:
    """Fit the search (or the plain pipeline); return the best fitted pipeline and summary."""
    pipeline = build_pipeline(params)
    n_classes = len(np.unique(y))
    search = build_search(pipeline, params, n_classes)
    search_pool_ready()  # the workers that ingest's stage started, if it ran in this process
    prefetch_later_imports()  # Evidently & co. for the later stages, while the search runs
    started = time.perf_counter()
    with joblib_backend(params.search) as backend:
        try:
            fitted = (search or pipeline).fit(X, y)
        except ValueError as err:
            raise LooplineError(f"training {params.model.name} failed: {str(err).splitlines()[0]}") from None
    best = fitted.best_estimator_ if search is not None else fitted
    return best, summarise(search, time.perf_counter() - started, backend, params.search)


def run(params: Params, root: Path) -> dict:
    import joblib

    X, y = xy(load_split(root, params, "train"), params)
    model, summary = train(X, y, params)
    summary = {"model": params.model.name, "estimator": params.model.estimator["_target_"], **summary}
    lay = Layout.of(root, params.paths)
    doc, timings = split_timings(summary)
    with Outputs(root) as out:
        out.custom(lay.model(MODEL_JOBLIB), lambda p: joblib.dump(model, p, compress=3))
        out.json(lay.report(SEARCH_JSON), doc)
        out.json(root / TIMINGS_JSON, timings)
    return {"best_score": summary["best_score"], "best_params": summary["best_params"],
            "fit_seconds": summary["fit_seconds"], "backend": summary["backend"]}
