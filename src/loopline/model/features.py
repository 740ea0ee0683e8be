"""Feature preprocessing for loopline models: the model-frame convention and the prep step.

Every stage feeds scikit-learn (and the exported ONNX graph) a *model frame*:

* numeric columns are ``float64`` with ``NaN`` for missing;
* categorical columns are Python ``str`` in an ``object`` column with ``""`` for
  missing (skl2onnx's string ``SimpleImputer`` matches ``""``, not ``NaN``);
* columns are ordered ``numeric + categorical``.

:func:`to_model_frame` produces that frame from whatever a loader or a serving
request gives us, and :func:`build_preprocessor` builds the ``"prep"`` step of the
``Pipeline([("prep", ...), ("model", ...)])`` that :mod:`loopline.model.onnx.convert` exports.
Everything built here is convertible by :func:`loopline.model.onnx.convert.convert`, and
parity-exact: the ``"knn"`` policy uses :class:`StableKNNImputer` (KNNImputer with
ties between equally distant donors broken by training row) because sklearn's own
tie order cannot be reproduced in ONNX.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    IsolationForest,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import KNNImputer, SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    ExtraTreeClassifier,
    ExtraTreeRegressor,
)

NUMERIC_IMPUTERS = ("mean", "median", "knn")
CATEGORICAL_IMPUTERS = ("most_frequent", "missing")
SCALERS = ("standard", "none", "auto")

#: Category that the ``"missing"`` policy gives to an empty categorical value. A real
#: category spelled exactly like this is merged with the missing ones.
MISSING_CATEGORY = "missing"

#: Estimators that ``scale="auto"`` leaves unscaled. Their splits compare one feature
#: with a threshold, so a monotone rescaling cannot change a prediction; scaling
#: would only cost time at train and serve. Anything else (linear models, SVMs,
#: k-NN, MLPs, unknown third-party models, ``None``) is scaled.
TREE_ESTIMATORS: tuple[type, ...] = (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    ExtraTreeClassifier,
    ExtraTreeRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    IsolationForest,
)


class StableKNNImputer(KNNImputer):
    """KNNImputer whose donors do not depend on ``np.argpartition``'s tie order.

    sklearn takes the k nearest donors with ``argpartition``, so among donors at
    exactly the same distance the pick is an implementation detail (integer-valued
    data has such ties), and it averages them in that arbitrary order. This
    subclass ranks donors by (distance, training row), so the earlier training row
    wins a tie, and sums them in that order, one after the other. The ONNX export
    (``TopK``, lower index first, same summation) then reproduces it bit for bit;
    with plain KNNImputer a tie at the k-th donor changed an imputed Income from
    119.8 to 125.8 on credit_data. Only ``weights="uniform"`` is changed; anything
    else falls back to sklearn.
    """

    def _calc_impute(
        self,
        dist_pot_donors: np.ndarray,
        n_neighbors: int,
        fit_X_col: np.ndarray,
        mask_fit_X_col: np.ndarray,
    ) -> np.ndarray:
        """Mean of the ``n_neighbors`` nearest donors, ties to the earlier row."""
        if self.weights != "uniform":
            return super()._calc_impute(dist_pot_donors, n_neighbors, fit_X_col, mask_fit_X_col)
        order = np.argsort(dist_pot_donors, axis=1, kind="stable")[:, :n_neighbors]
        dist = np.take_along_axis(dist_pot_donors, order, axis=1)
        weights = (~np.isnan(dist) & ~mask_fit_X_col.take(order)).astype(np.float64)
        values = np.where(mask_fit_X_col.take(order), 0.0, fit_X_col.take(order))
        total = values[:, 0] * weights[:, 0]
        for j in range(1, order.shape[1]):
            total = total + values[:, j] * weights[:, j]
        return total / np.maximum(weights.sum(axis=1), 1.0)


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a ValueError naming both."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; allowed values: {list(allowed)}")
    return value


def _check_columns(numeric: Sequence[str], categorical: Sequence[str]) -> None:
    """Reject column lists that cannot describe a model frame.

    Raises:
        ValueError: a name is not a non-empty string, is repeated, is both numeric
            and categorical, or both lists are empty.
    """
    for arg, cols in (("numeric", numeric), ("categorical", categorical)):
        if isinstance(cols, str):
            raise ValueError(f"{arg} must be a list of column names, not the string {cols!r}")
        bad = [c for c in cols if not isinstance(c, str) or not c]
        if bad:
            raise ValueError(f"{arg} holds invalid column names {bad!r}; use non-empty strings")
        dup = sorted({c for c in cols if list(cols).count(c) > 1})
        if dup:
            raise ValueError(f"{arg} lists columns more than once: {dup}")
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise ValueError(f"columns {both} are listed as both numeric and categorical")
    if not numeric and not categorical:
        raise ValueError("numeric and categorical are both empty; there is nothing to model")


def is_tree_based(estimator: object) -> bool:
    """Tell whether ``estimator`` (or a Pipeline's final step) is a tree model.

    The rule is explicit on purpose: an instance of one of :data:`TREE_ESTIMATORS`.
    """
    if isinstance(estimator, Pipeline):
        estimator = estimator.steps[-1][1]
    return isinstance(estimator, TREE_ESTIMATORS)


def _numeric_imputer(numeric_imputer: str, knn_neighbors: int) -> BaseEstimator:
    """Build the numeric imputer for one of :data:`NUMERIC_IMPUTERS`."""
    if numeric_imputer == "knn":
        return StableKNNImputer(n_neighbors=knn_neighbors)
    return SimpleImputer(strategy=numeric_imputer)


def _categorical_imputer(categorical_imputer: str) -> SimpleImputer:
    """Build the categorical imputer; ``""`` is the missing marker of the model frame."""
    if categorical_imputer == "missing":
        return SimpleImputer(missing_values="", strategy="constant", fill_value=MISSING_CATEGORY)
    return SimpleImputer(missing_values="", strategy="most_frequent")


def build_preprocessor(
    numeric: list[str],
    categorical: list[str],
    *,
    numeric_imputer: str = "median",
    knn_neighbors: int = 5,
    categorical_imputer: str = "most_frequent",
    scale: str = "auto",
    estimator: object = None,
) -> ColumnTransformer:
    """Build the ``"prep"`` ColumnTransformer for a model frame.

    Numeric columns: impute (``SimpleImputer`` mean/median or
    :class:`StableKNNImputer`, a KNNImputer with deterministic ties), then
    ``StandardScaler`` if scaling is on. Categorical columns: impute ``""`` (most
    frequent category or the constant :data:`MISSING_CATEGORY`), then a dense
    ``OneHotEncoder(handle_unknown="ignore")`` so unseen categories encode to zeros
    instead of failing at serve time. Output is a dense float64 matrix, which
    HistGradientBoosting needs and skl2onnx converts.

    Args:
        numeric: numeric column names, in model-frame order.
        categorical: categorical column names, in model-frame order.
        numeric_imputer: one of :data:`NUMERIC_IMPUTERS`.
        knn_neighbors: ``n_neighbors`` of the KNN imputer (integer >= 1).
        categorical_imputer: one of :data:`CATEGORICAL_IMPUTERS`.
        scale: ``"standard"`` always scales, ``"none"`` never does, ``"auto"`` scales
            unless :func:`is_tree_based` says ``estimator`` is a tree model
            (``estimator=None`` counts as not tree-based, so it is scaled).
        estimator: the model the preprocessor will feed; only read by ``scale="auto"``.

    Returns:
        An unfitted ColumnTransformer with transformers named ``"num"`` and ``"cat"``
        (a transformer is left out when its column list is empty).

    Raises:
        ValueError: an argument is not one of its allowed values, or the column
            lists are invalid; the message names the argument.
    """
    _check_columns(numeric, categorical)
    _check_choice("numeric_imputer", numeric_imputer, NUMERIC_IMPUTERS)
    _check_choice("categorical_imputer", categorical_imputer, CATEGORICAL_IMPUTERS)
    _check_choice("scale", scale, SCALERS)
    if (
        not isinstance(knn_neighbors, Integral)
        or isinstance(knn_neighbors, bool)
        or knn_neighbors < 1
    ):
        raise ValueError(f"knn_neighbors={knn_neighbors!r} is not supported; use an integer >= 1")

    do_scale = scale == "standard" or (scale == "auto" and not is_tree_based(estimator))
    transformers = []
    if numeric:
        steps = [("impute", _numeric_imputer(numeric_imputer, int(knn_neighbors)))]
        if do_scale:
            steps.append(("scale", StandardScaler()))
        transformers.append(("num", Pipeline(steps), list(numeric)))
    if categorical:
        cat_steps = [
            ("impute", _categorical_imputer(categorical_imputer)),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
        transformers.append(("cat", Pipeline(cat_steps), list(categorical)))
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)


def _numeric_column(name: str, col: pd.Series) -> np.ndarray:
    """Cast one column to float64 with NaN for missing.

    Strings are parsed; ``None``, ``NaN``, ``pd.NA`` and blank strings count as
    missing.

    Raises:
        ValueError: a value cannot be parsed as a finite number; names the column.
    """
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        raw = col.astype(object)
        blank = raw.map(lambda v: isinstance(v, str) and not v.strip(), na_action="ignore")
        raw = raw.mask(blank.fillna(False).astype(bool))
        parsed = pd.to_numeric(raw, errors="coerce")
        bad = parsed.isna() & raw.notna()
        if bad.any():
            sample = raw[bad].unique()[:3].tolist()
            raise ValueError(
                f"numeric column {name!r} has values that are not numbers, e.g. {sample!r}"
            )
        values = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(values).any():
        raise ValueError(f"numeric column {name!r} has infinite values; use NaN for missing")
    return values


def _categorical_column(col: pd.Series) -> np.ndarray:
    """Cast one column to an object array of ``str`` with ``""`` for missing."""
    values = col.to_numpy(dtype=object, na_value=None)
    missing = pd.isna(values)
    out = values.astype(str).astype(object)
    out[missing] = ""
    return out


def to_model_frame(
    df: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> pd.DataFrame:
    """Cast ``df`` to the model-frame convention (see the module docstring).

    Other columns are dropped and the result is ordered ``numeric + categorical``
    with ``df``'s index. Categorical values are turned into ``str`` (``1`` -> ``"1"``),
    so train and serve must send the same types. Categorical columns are forced to
    ``object`` dtype: pandas >= 3 would otherwise infer its ``str`` dtype, whose
    missing marker is NaN.

    Raises:
        ValueError: a listed column is absent from ``df`` or the column lists are
            invalid, or a numeric column holds values that are not finite numbers;
            the message names the column.
    """
    _check_columns(numeric, categorical)
    absent = [c for c in [*numeric, *categorical] if c not in df.columns]
    if absent:
        raise ValueError(f"columns missing from the data frame: {absent}")
    data: dict[str, pd.Series] = {}
    for c in numeric:
        data[c] = pd.Series(_numeric_column(c, df[c]), index=df.index, dtype=np.float64)
    for c in categorical:
        data[c] = pd.Series(_categorical_column(df[c]), index=df.index, dtype=object)
    return pd.DataFrame(data, index=df.index)
