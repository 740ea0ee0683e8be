"""Synthetic data for the model layer's tests: features, ONNX export, parity, runtime, feeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from loopline.model.features import build_preprocessor, to_model_frame

NUMERIC = ["age", "income", "score"]
CATEGORICAL = ["city", "plan"]

ESTIMATORS = {
    "logreg": lambda: LogisticRegression(max_iter=1000),
    "rf": lambda: RandomForestClassifier(n_estimators=8, random_state=0),
    "hgb": lambda: HistGradientBoostingClassifier(max_iter=15, random_state=0),
}


def raw_frame(n: int, seed: int, unseen: bool = False) -> pd.DataFrame:
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


def target(raw: pd.DataFrame, n_classes: int, seed: int) -> np.ndarray:
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


def model_frames() -> dict[str, object]:
    """Train and test frames (unseen categories in test), binary and 3-class targets."""
    train_raw = raw_frame(240, seed=1)
    test_raw = raw_frame(80, seed=2, unseen=True)
    return {
        "train": to_model_frame(train_raw, NUMERIC, CATEGORICAL),
        "test": to_model_frame(test_raw, NUMERIC, CATEGORICAL),
        "y2": target(train_raw, 2, seed=3),
        "y3": target(train_raw, 3, seed=3),
    }


def fit_pipeline(
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


#: a smaller frame, with gaps in every column, for the private-API contract tests
SMALL_NUMERIC, SMALL_CATEGORICAL = ["a", "b"], ["c"]


def small_model_frame(n: int = 60, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    a[::7] = np.nan
    raw = pd.DataFrame({"a": a, "b": rng.integers(0, 50, n).astype(float),
                        "c": rng.choice(["x", "y", None], n)})
    return to_model_frame(raw, SMALL_NUMERIC, SMALL_CATEGORICAL), (a > 0).astype(int)
