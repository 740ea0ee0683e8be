"""ingest: read the configured source table into data/raw with a stable row id.

The row id is either the configured ``data.id_column`` (which must be unique) or a hash of
the row's content, so the same applicant keeps the same id when the source is re-exported
or re-ordered; exact duplicate rows get an occurrence suffix. When the data has an ordering
column (a timestamp, say), rows are sorted by it, so later stages and monitoring see time.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from loopline.config.params import Params
from loopline.core.errors import LooplineError
from loopline.core.files import Outputs

ROW_ID = "row_id"


def read_table(path: Path, fmt: str = "auto", *, shown_as: str | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file; raise a one-line error naming the file on any problem."""
    name = shown_as or str(path)
    if not path.is_file():
        raise LooplineError(f"data file not found: {name}")
    if fmt == "auto":
        suffix = "".join(path.suffixes[-2:]).lower()
        if suffix.endswith(".parquet") or suffix.endswith(".pq"):
            fmt = "parquet"
        elif suffix.endswith((".csv", ".csv.gz", ".tsv")):
            fmt = "csv"
        else:
            raise LooplineError(
                f"cannot tell the format of {name}: use a .csv or .parquet file, "
                "or set data.format"
            )
    try:
        if fmt == "parquet":
            df = pd.read_parquet(path)
        else:
            sep = "\t" if path.suffix.lower() == ".tsv" else ","
            with warnings.catch_warnings():
                # rows longer than the header: pandas would drop fields with only a warning
                warnings.simplefilter("error", pd.errors.ParserWarning)
                df = pd.read_csv(path, sep=sep, skipinitialspace=True, on_bad_lines="error",
                                 index_col=False)
    except pd.errors.ParserWarning as warn:
        raise LooplineError(f"malformed CSV {name}: {str(warn).split('.')[0]}") from None
    except pd.errors.EmptyDataError:
        raise LooplineError(f"data file is empty: {name}") from None
    except pd.errors.ParserError as err:
        first = str(err).strip().splitlines()[0]
        raise LooplineError(f"malformed CSV {name}: {first}") from None
    except UnicodeDecodeError as err:
        raise LooplineError(
            f"malformed CSV {name}: not UTF-8 text (byte {err.start}: {err.reason})"
        ) from None
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LooplineError(f"cannot read {fmt} file {name}: {first}") from None
    if df.empty:
        raise LooplineError(f"data file has a header but no rows: {name}")
    unnamed = [c for c in df.columns if str(c).startswith("Unnamed: ")]
    if unnamed:
        raise LooplineError(f"malformed CSV {name}: {len(unnamed)} column(s) without a header name")
    return df


def normalise_objects(df: pd.DataFrame) -> pd.DataFrame:
    """Make text columns uniformly ``str`` (NaN kept), so Parquet can store mixed input.

    A numeric column with a stray word in it arrives as mixed objects; keeping it as text
    lets validate report the offending values instead of Parquet refusing the file.
    """
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col].dtype):
            values = out[col].astype(object)
            out[col] = values.where(values.isna(), values.astype(str).str.strip()).astype(object)
    return out


def as_text(col: pd.Series) -> pd.Series:
    """Canonical text of each value, None where missing: ``1``, ``1.0`` and ``"1"`` agree.

    Whole numbers print without a decimal point whatever the column's dtype, so a gap that
    turns an int column into floats (or a CSV re-exported as Parquet) changes nothing.
    """
    missing = col.isna()
    if pd.api.types.is_bool_dtype(col):
        text = col.astype(object).map(lambda v: str(v).lower())
    elif pd.api.types.is_numeric_dtype(col):
        values = col.astype("float64")
        whole = values.notna() & np.isfinite(values) & (values == np.round(values)) & (values.abs() < 2**53)
        text = values.map(repr).astype(object)
        text[whole] = values[whole].astype("int64").astype(str)
    else:
        text = col.astype(object).map(str)
        numeric = pd.to_numeric(text.where(~missing), errors="coerce")
        whole = numeric.notna() & np.isfinite(numeric) & (numeric == np.round(numeric)) & (numeric.abs() < 2**53)
        text[whole] = numeric[whole].astype("int64").astype(str)
    return text.where(~missing, None)


def content_row_ids(df: pd.DataFrame) -> pd.Series:
    """A 16-hex-digit id from each row's content; duplicates get ``-1``, ``-2``… suffixes.

    Independent of column order, row order and int/float/text representation of numbers.
    """
    cols = sorted(df.columns, key=str)
    canon = pd.DataFrame({c: as_text(df[c]).fillna("\x00") for c in cols})
    hashed = pd.util.hash_pandas_object(canon, index=False)
    base = hashed.map(lambda v: hashlib.blake2b(int(v).to_bytes(8, "little"), digest_size=8).hexdigest())
    dup = base.groupby(base).cumcount()
    return base.where(dup == 0, base + "-" + dup.astype(str))


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


def ingest(df: pd.DataFrame, id_column: str | None, order_column: str | None) -> pd.DataFrame:
    """The pure part of the stage: normalised text, stable row id, rows in order."""
    return order_rows(add_row_id(normalise_objects(df), id_column), order_column)


def run(params: Params, root: Path) -> dict:
    cfg = params.data
    df = read_table(root / cfg.source, cfg.format, shown_as=cfg.source)
    raw = ingest(df, cfg.id_column, cfg.order_column)
    with Outputs(root) as out:
        out.parquet(params.paths.raw, raw)
    return {"rows": len(raw), "columns": raw.shape[1] - 1, "output": params.paths.raw}
