"""Infer a data schema once, to be reviewed and committed under conf/data.

Inferred ranges are deliberately loose (a lower bound of 0 for non-negative columns and no
upper bound), because tomorrow's data will not stay inside today's extremes; tighten them
by hand where the domain says so.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from loopline.core.errors import LooplineError
from loopline.pipeline.tabular import as_text, numbers_a_reader_takes_as_text

MAX_CATEGORIES = 50


def infer_column(col: pd.Series, *, read_as_text: bool = False) -> dict:
    """A schema rule for one column, typed by its values *and* its dtype.

    Whole numbers are ``integer`` in an integer column, and in a float column with gaps
    (pandas reads an integer column with gaps as float); a float column without gaps is a
    ``float`` even when every value is whole (``5.0`` in the file). Text with more than
    :data:`MAX_CATEGORIES` distinct values is a category without a list of values (free
    text, ids, dates): valid as any text, and left out of the features by ``loopline init``.

    Numbers with a placeholder for gaps (``?``, ``-``: text of up to three signs that is no
    number; or a word for it, such as ``na`` or ``unknown``) are numbers with gaps, the
    placeholder their ``missing_values``. So is a column of numbers that a plain CSV reader
    takes as text (``read_as_text``: blank fields, see
    :func:`loopline.pipeline.tabular.numbers_a_reader_takes_as_text`), with ``""``.
    """
    rule: dict = {}
    values = col.dropna()
    markers = None if pd.api.types.is_numeric_dtype(col) else _gap_markers(values)
    if markers is not None:
        values = pd.to_numeric(values.astype(str).str.strip(), errors="coerce").dropna()
    if pd.api.types.is_bool_dtype(col) or (markers is None and _booleans_with_gaps(values)):
        rule["type"] = "boolean"
    elif pd.api.types.is_numeric_dtype(col) or markers is not None:
        as_float = values.astype("float64")
        whole = bool(len(as_float)) and bool(np.all(np.isfinite(as_float)) and np.all(as_float == np.round(as_float)))
        int_dtype = pd.api.types.is_integer_dtype(col)
        gaps = markers is not None or bool(col.isna().any())
        rule["type"] = "integer" if whole and (int_dtype or gaps) else "float"
        if len(as_float) and as_float.min() >= 0:
            rule["min"] = 0
        if markers is not None or (read_as_text and gaps):
            rule["nullable"] = True
            rule["missing_values"] = markers if markers is not None else [""]
            return rule
    else:
        cats = sorted(as_text(values).unique())
        rule["type"] = "category"
        if len(cats) <= MAX_CATEGORIES:
            rule["categories"] = cats
    rule["nullable"] = bool(col.isna().any())
    return rule


#: a placeholder for a gap among numbers: up to three signs, no letter or digit ("" too)
_MARKER = re.compile(r"[^\w\s]{0,3}")
#: words for a gap among numbers that pandas' reader leaves as text (it reads NA, N/A,
#: null, NaN and None as gaps itself), in any case
_MISSING_WORDS = frozenset({"na", "n.a.", "n.a", "none", "missing", "unknown", "nil", "empty",
                            "undefined", "not available"})


def _gap_markers(values: pd.Series) -> list[str] | None:
    """The placeholders of a text column of numbers with gaps marked (``["?"]``), else None.

    At most three distinct placeholders, and at least as many numbers as placeholders: a
    column of mostly ``-`` is a category."""
    if not len(values) or pd.api.types.is_bool_dtype(values):
        return None
    text = values.astype(str).str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    other = text[numbers.isna()]
    markers = sorted(other.unique())
    if (not markers or len(markers) > 3 or len(other) > len(text) - len(other)
            or not all(_MARKER.fullmatch(m) or m.lower() in _MISSING_WORDS for m in markers)):
        return None
    return markers


def _booleans_with_gaps(values: pd.Series) -> bool:
    """True/False with gaps: pandas reads such a column of a CSV (any case) as objects,
    bools and NaN, which ingest keeps as the text ``True``/``False``. Other words (``true``
    as text in a Parquet file, yes/no) and 1/0 are left as they are, categories and integers:
    a caller sends the values the file holds."""
    if pd.api.types.is_numeric_dtype(values) or not len(values):
        return False
    return bool(values.astype(str).isin(("True", "False")).all())


def infer_schema(df: pd.DataFrame, target: str, *, read_as_text: frozenset[str] = frozenset()) -> dict:
    """Schema dict (``columns`` and ``allow_extra_columns``) for ``df`` (``read_as_text``:
    see :func:`infer_column`).

    Raises:
        LooplineError: the target is unknown, or not a classification target (too many
            distinct values, or fractional numbers: a regression target).
    """
    if target not in df.columns:
        raise LooplineError(f"target {target!r} is not a column of the data "
                            f"(columns: {', '.join(map(str, df.columns))})")
    columns = {str(c): infer_column(df[c], read_as_text=str(c) in read_as_text)
               for c in df.columns if c != "row_id"}
    t = columns[target]
    classes = sorted(as_text(df[target].dropna()).unique())  # true/1, not True/1.0
    y = df[target].dropna()
    fractions = (pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
                 and bool((y.astype("float64") != y.astype("float64").round()).any()))
    if fractions or len(classes) > MAX_CATEGORIES:
        raise LooplineError(f"target {target!r} has {len(classes)} distinct values"
                            + (" with fractions" if fractions else "")
                            + ": a regression target, and loopline trains classifiers; "
                            "choose a column of classes (or bin this one into classes)")
    if t["type"] != "category" or "categories" not in t:
        columns[target] = {"type": "category", "categories": classes, "nullable": False}
    columns[target]["nullable"] = False
    return {"allow_extra_columns": False, "columns": columns}


def infer_file_schema(df: pd.DataFrame, target: str, path: Path) -> dict:
    """:func:`infer_schema` of ``df``, read from ``path`` (which tells whether a plain CSV
    reader takes some of its columns of numbers as text)."""
    gappy = [str(c) for c in df.columns if c not in ("row_id", target)
             and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
             and bool(df[c].isna().any())]
    return infer_schema(df, target, read_as_text=frozenset(numbers_a_reader_takes_as_text(path, gappy)))


def schema_yaml(schema: dict) -> str:
    """The schema as the ``schema:`` block of a conf/data file, one column per line."""
    import json

    lines = ["schema:", f"  allow_extra_columns: {str(schema['allow_extra_columns']).lower()}", "  columns:"]
    for name, rule in schema["columns"].items():
        body = ", ".join(f"{k}: {json.dumps(v)}" for k, v in rule.items())
        lines.append(f"    {json.dumps(name)}: {{{body}}}")
    return "\n".join(lines) + "\n"
