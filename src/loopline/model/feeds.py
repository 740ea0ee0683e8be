"""onnxruntime feeds for an exported model: one ``[N, 1]`` array per input column.

The graph (see docs/onnx.md) takes numeric columns as float64 with NaN for missing and
categorical columns as ``str`` with ``""`` for missing. Three sources give the values:
a model frame (the gate, parity), validated records (``/predict``) and validated columns
(``/predict_batch``); each only gathers a column's values and hands them to the same
conversion, :func:`numbers` or :func:`strings`.

Users name columns as their CSV does (``ratio/total``, ``annual income (€)``, ``2nd``);
skl2onnx renames graph inputs to word characters (``ratio_total``, uniquified when two
names collide). :func:`input_names` is the one place that maps a user's column to its
graph input: the export records the mapping in the model's metadata, every feed below is
keyed by graph input, and nothing else ever sees the graph's names.

numpy only at import (the service imports this); pandas is used for frames alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Feeds = dict[str, np.ndarray]
#: model metadata key: JSON object ``{user column: graph input name}``
META_INPUTS = "loopline.inputs"


def input_names(columns: Sequence[str], graph_inputs: Sequence[str]) -> dict[str, str]:
    """``{user column: graph input}``, pairing the columns with the graph inputs in order.

    skl2onnx declares one graph input per entry of ``initial_types``, in that order, so
    the i-th column given to the converter is the i-th graph input whatever its name.

    Raises:
        ValueError: the counts differ (the graph is not one input per column).
    """
    if len(columns) != len(graph_inputs):
        raise ValueError(f"{len(columns)} columns but {len(graph_inputs)} graph inputs")
    return dict(zip(columns, graph_inputs, strict=True))


def _key(names: Mapping[str, str] | None, column: str) -> str:
    return names.get(column, column) if names else column


def numbers(values: Any, n: int) -> np.ndarray:
    """``[n, 1]`` float64 of a numeric column (a view when it already is float64).

    ``values`` is None (the column is absent: all missing), a list with None for
    missing, a numpy array, or a pandas ExtensionArray (``pd.NA`` for missing).
    """
    if isinstance(values, list):  # first: the serving path
        return np.array(values, dtype=np.float64).reshape(n, 1)
    if values is None:
        return np.full((n, 1), np.nan)
    if isinstance(values, np.ndarray):
        return values.astype(np.float64, copy=False).reshape(n, 1)
    return values.to_numpy(dtype=np.float64, na_value=np.nan).reshape(n, 1)


def strings(values: Any, n: int) -> np.ndarray:
    """``[n, 1]`` object array of ``str`` with ``""`` for missing, of a categorical column.

    onnxruntime would silently turn None/NaN into the strings "None"/"nan" (an unknown
    category, not an imputed one), so missing values are mapped here. ``values`` as for
    :func:`numbers`; a list (validated input) marks missing with None only.
    """
    if isinstance(values, list):  # first: the serving path
        out = np.empty((n, 1), dtype=object)
        out[:, 0] = [v or "" for v in values]
        return out
    if values is None:
        out = np.empty((n, 1), dtype=object)
        out[:, 0] = ""
        return out
    if isinstance(values, np.ndarray):
        import pandas as pd

        missing = pd.isna(values)
        if missing.any():
            values = np.where(missing, "", values)
        return values.astype(object, copy=False).reshape(n, 1)
    return values.to_numpy(dtype=object, na_value="").reshape(n, 1)


def _column(X: Any, name: str) -> Any:
    """Values of one column of a DataFrame without building a Series.

    Building a Series costs ~30 us per column with pandas 3 on the 2-core box, which
    made the frame feeds ~1 ms per call; pandas' internal ``_get_column_array`` returns
    the same ndarray/ExtensionArray in ~2 us (pandas is bounded in pyproject.toml and
    tests/unit/model/test_feeds.py checks the method). Falls back to the public API if
    the name is duplicated or pandas drops the method.
    """
    loc = X.columns.get_loc(name)
    getter = getattr(X, "_get_column_array", None)
    if isinstance(loc, int) and getter is not None:
        return getter(loc)
    return X[name].array


def from_frame(X: Any, numeric: Sequence[str], categorical: Sequence[str],
               names: Mapping[str, str] | None = None) -> Feeds:
    """Feeds from a model frame (a pandas DataFrame), vectorised per column.

    Categorical columns may hold None, NaN or ``pd.NA`` for missing, so pandas' ``str``
    dtype (e.g. after a parquet round trip) is accepted too. Measured on the 2-core box,
    13 credit_data columns: ~0.1 ms for 1 row, ~0.35 ms for 1,000 rows. ``names`` maps
    a user column to its graph input (:func:`input_names`; identity when left out), here
    and in the other feeds.

    Raises:
        ValueError: a column is absent from ``X``.
    """
    absent = [c for c in (*numeric, *categorical) if c not in X.columns]
    if absent:
        raise ValueError(f"columns missing from the data frame: {absent}")
    n = len(X)
    feeds = {_key(names, c): numbers(_column(X, c), n) for c in numeric}
    feeds.update({_key(names, c): strings(_column(X, c), n) for c in categorical})
    return feeds


def from_records(records: Sequence[Mapping[str, Any]], numeric: Sequence[str],
                 categorical: Sequence[str], names: Mapping[str, str] | None = None) -> Feeds:
    """Feeds from validated records (a field left out is missing)."""
    n = len(records)
    feeds = {_key(names, c): numbers([r.get(c) for r in records], n) for c in numeric}
    feeds.update({_key(names, c): strings([r.get(c) for r in records], n) for c in categorical})
    return feeds


def from_columns(columns: Mapping[str, Sequence[Any]], n: int, numeric: Sequence[str],
                 categorical: Sequence[str], names: Mapping[str, str] | None = None) -> Feeds:
    """Feeds from ``n`` rows of validated columns (an absent column is all missing)."""
    feeds = {_key(names, c): numbers(columns.get(c), n) for c in numeric}
    feeds.update({_key(names, c): strings(columns.get(c), n) for c in categorical})
    return feeds
