"""ingest: read the configured source table into data/raw with a stable row id.

The row id is either the configured ``data.id_column`` (which must be unique) or a hash of
the row's content, so the same applicant keeps the same id when the source is re-exported
or re-ordered; exact duplicate rows get an occurrence suffix. When the data has an ordering
column (a timestamp, say), rows are sorted by it, so later stages and monitoring see time.
Rows without a label (an empty target) are left out: they stay in the source, and the
stage's summary counts them (``unlabelled``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from loopline.config.params import Params
from loopline.core.errors import LooplineError
from loopline.core.files import Outputs
from loopline.pipeline.tabular import ROW_ID, blank_placeholders, content_row_ids, normalise_objects, read_table


def add_row_id(df: pd.DataFrame, id_column: str | None) -> pd.DataFrame:
    """Put a stable ``row_id`` first: the id column when configured, else a content hash."""
    if ROW_ID in df.columns and id_column != ROW_ID:
        raise LooplineError(
            f"the data already has a column named {ROW_ID!r}: set data.id_column: {ROW_ID} "
            "to use it as the row id, or rename it"
        )
    out = df.copy()
    if id_column is not None:
        if id_column not in out.columns:
            raise LooplineError(f"data.id_column {id_column!r} is not a column of the data")
        ids = out[id_column]
        if ids.isna().any():
            raise LooplineError(f"data.id_column {id_column!r} has {int(ids.isna().sum())} empty values")
        dups = ids[ids.duplicated(keep=False)]
        if not dups.empty:
            sample = ", ".join(map(str, dups.unique()[:5]))
            raise LooplineError(f"data.id_column {id_column!r} is not unique: repeated ids {sample}")
        row_ids = ids.astype(str)
        if id_column == ROW_ID:
            out = out.drop(columns=ROW_ID)
    else:
        row_ids = content_row_ids(out)
    out.insert(0, ROW_ID, row_ids.to_numpy())
    return out


def order_rows(df: pd.DataFrame, order_column: str | None) -> pd.DataFrame:
    """Sort by the ordering column (stable, ties by row id) when the data has one."""
    if order_column is None:
        return df.reset_index(drop=True)
    if order_column not in df.columns:
        raise LooplineError(f"data.order_column {order_column!r} is not a column of the data")
    key = df[order_column]
    if not pd.api.types.is_numeric_dtype(key):
        parsed = pd.to_datetime(key, errors="coerce", utc=True)
        if parsed.notna().sum() == key.notna().sum():
            key = parsed
    ordered = df.assign(_key=key).sort_values(["_key", ROW_ID], kind="mergesort")
    return ordered.drop(columns="_key").reset_index(drop=True)


def ingest(df: pd.DataFrame, id_column: str | None, order_column: str | None,
           missing: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """The pure part of the stage: normalised text, placeholders of gaps as gaps, stable row
    id, rows in order."""
    text = blank_placeholders(normalise_objects(df), missing or {})
    return order_rows(add_row_id(text, id_column), order_column)


def run(params: Params, root: Path) -> dict:
    cfg = params.data
    df = read_table(root / cfg.source, cfg.format, shown_as=cfg.source)
    raw = ingest(df, cfg.id_column, cfg.order_column, cfg.schema_.missing_values)
    unlabelled = raw[cfg.target].isna() if cfg.target in raw.columns else None
    if unlabelled is not None and unlabelled.any():
        raw = raw[~unlabelled].reset_index(drop=True)
    with Outputs(root) as out:
        out.parquet(params.paths.raw, raw)
    return {"rows": len(raw), "columns": raw.shape[1] - 1, "output": params.paths.raw,
            "unlabelled": 0 if unlabelled is None else int(unlabelled.sum())}
