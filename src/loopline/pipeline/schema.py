"""Infer a data schema once, to be reviewed and committed under conf/data.

Inferred ranges are deliberately loose (a lower bound of 0 for non-negative columns and no
upper bound), because tomorrow's data will not stay inside today's extremes; tighten them
by hand where the domain says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from loopline.core.errors import LooplineError
from loopline.pipeline.tabular import as_text

MAX_CATEGORIES = 50


def infer_column(col: pd.Series) -> dict:
    """A schema rule for one column."""
    rule: dict = {}
    values = col.dropna()
    if pd.api.types.is_bool_dtype(col):
        rule["type"] = "boolean"
    elif pd.api.types.is_numeric_dtype(col):
        as_float = values.astype("float64")
        integral = bool(len(as_float)) and bool(np.all(np.isfinite(as_float)) and np.all(as_float == np.round(as_float)))
        rule["type"] = "integer" if integral else "float"
        if len(as_float) and as_float.min() >= 0:
            rule["min"] = 0
    else:
        cats = sorted(as_text(values).unique())
        if len(cats) > MAX_CATEGORIES:
            raise LooplineError(
                f"column {col.name!r} has {len(cats)} distinct text values: too many for a "
                f"category (max {MAX_CATEGORIES}); drop it or encode it before loopline"
            )
        rule["type"] = "category"
        rule["categories"] = cats
    rule["nullable"] = bool(col.isna().any())
    return rule


def infer_schema(df: pd.DataFrame, target: str) -> dict:
    """Schema dict (``columns`` and ``allow_extra_columns``) for ``df``."""
    if target not in df.columns:
        raise LooplineError(f"target {target!r} is not a column of the data (columns: {', '.join(map(str, df.columns))})")
    columns = {str(c): infer_column(df[c]) for c in df.columns if c != "row_id"}
    t = columns[target]
    if t["type"] != "category":
        classes = sorted(as_text(df[target].dropna()).unique())  # true/1, not True/1.0
        if len(classes) > MAX_CATEGORIES:
            raise LooplineError(f"target {target!r} has {len(classes)} distinct values: not a classification target")
        columns[target] = {"type": "category", "categories": classes, "nullable": False}
    columns[target]["nullable"] = False
    return {"allow_extra_columns": False, "columns": columns}


def schema_yaml(schema: dict) -> str:
    """The schema as the ``schema:`` block of a conf/data file, one column per line."""
    import json

    lines = ["schema:", f"  allow_extra_columns: {str(schema['allow_extra_columns']).lower()}", "  columns:"]
    for name, rule in schema["columns"].items():
        body = ", ".join(f"{k}: {json.dumps(v)}" for k, v in rule.items())
        lines.append(f"    {json.dumps(name)}: {{{body}}}")
    return "\n".join(lines) + "\n"
