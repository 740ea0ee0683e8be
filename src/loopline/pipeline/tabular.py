"""Tabular helpers shared by the stages, the monitor, schema inference and ``loopline init``.

Reading a data file, the canonical text of a value, the content-based row id, parsing
validated columns, and turning a prepared split into what the model sees. No stage imports
another stage: what two stages (or a stage and another layer) share lives here.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from loopline.core.errors import LooplineError
from loopline.core.layout import Layout

if TYPE_CHECKING:
    from loopline.config.params import Params
    from loopline.config.pipeline import ColumnRule

ROW_ID = "row_id"

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


# ------------------------------------------------------------------ reading data


def table_format(path: Path, fmt: str = "auto", *, shown_as: str | None = None) -> str:
    """``csv`` or ``parquet``: ``fmt`` when given, else told by the file's suffix."""
    if fmt != "auto":
        return fmt
    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith(".parquet") or suffix.endswith(".pq"):
        return "parquet"
    if suffix.endswith((".csv", ".csv.gz", ".tsv")):
        return "csv"
    raise LooplineError(f"cannot tell the format of {shown_as or path}: use a .csv or .parquet "
                        "file, or set data.format")


#: the field delimiters a CSV is looked at for, in order of preference
DELIMITERS = (",", ";", "\t", "|")


def csv_delimiter(path: Path) -> str:
    """The field delimiter of a CSV file, from its first lines.

    ``,`` unless those lines are split into the same number of fields (more than one) by
    ``;``, a tab or ``|`` and not by ``,``: spreadsheets in many locales export ``;``, and
    public data sets ship so (wine quality, bank marketing). A ``.tsv`` file is tab-separated;
    a missing or unreadable file is left to the reader to report.
    """
    import csv
    import gzip
    import itertools

    if path.suffix.lower() == ".tsv":
        return "\t"
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as fh:
            head = list(itertools.islice(fh, 64))
    except OSError:
        return ","
    if len(head) == 64:
        head = head[:-8]  # a quoted field may run past the lines read: judge by whole rows
    for sep in DELIMITERS:
        widths = {len(row) for row in csv.reader(head, delimiter=sep) if row}
        if len(widths) == 1 and widths.pop() > 1:
            return sep
    return ","


def write_table(df: pd.DataFrame, path: Path, fmt: str = "auto") -> None:
    """Write ``df`` as the CSV or Parquet file ``path`` is (atomically; no index column).
    A CSV that exists keeps its delimiter and its encoding."""
    from loopline.core.files import write_atomic

    if table_format(path, fmt) == "parquet":
        write_atomic(path, lambda p: df.to_parquet(p, index=False))
    elif path.is_file():
        sep, encoding = csv_delimiter(path), csv_encoding(path)
        write_atomic(path, lambda p: df.to_csv(p, index=False, sep=sep, encoding=encoding))
    else:
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        write_atomic(path, lambda p: df.to_csv(p, index=False, sep=sep))


def csv_encoding(path: Path) -> str:
    """``utf-8``, else ``cp1252`` (Windows' Western European text, which public data sets
    often are), else ``latin-1``; ``utf-8`` for binary data (a NUL byte in its first 64 KiB),
    which then fails to read as the malformed file it is."""
    import codecs
    import gzip

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    decoder = codecs.getincrementaldecoder("utf-8")()
    with opener(path, "rb") as fh:
        try:
            while chunk := fh.read(1 << 20):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
            return "utf-8"
        except UnicodeDecodeError:
            pass
    with opener(path, "rb") as fh:
        data = fh.read()
    if b"\x00" in data[: 1 << 16]:
        return "utf-8"
    try:
        data.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _read_csv(path: Path, encoding: str) -> pd.DataFrame:
    with warnings.catch_warnings():
        # rows longer than the header: pandas would drop fields with only a warning
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return pd.read_csv(path, sep=csv_delimiter(path), skipinitialspace=True,
                           on_bad_lines="error", index_col=False, encoding=encoding)


def read_table(path: Path, fmt: str = "auto", *, shown_as: str | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file; raise a one-line error naming the file on any problem.

    A CSV's delimiter is :func:`csv_delimiter`'s, its text UTF-8 or, when it is not,
    :func:`csv_encoding`'s."""
    name = shown_as or str(path)
    if not path.is_file():
        raise LooplineError(f"data file not found: {name}")
    fmt = table_format(path, fmt, shown_as=name)
    try:
        if fmt == "parquet":
            df = pd.read_parquet(path)
        else:
            try:
                df = _read_csv(path, "utf-8")
            except UnicodeDecodeError:
                encoding = csv_encoding(path)
                if encoding == "utf-8":
                    raise
                df = _read_csv(path, encoding)
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
    # a column without a header is an error, but for a row index (kept, an id) and an empty
    # one, as a delimiter at the end of every line makes (kept, left out of the features)
    unnamed = [c for c in df.columns if str(c).startswith("Unnamed: ")
               and not _row_index(df, c) and not df[c].isna().all()]
    if unnamed:
        raise LooplineError(f"malformed CSV {name}: {len(unnamed)} column(s) without a header name")
    return df


def numbers_a_reader_takes_as_text(path: Path, columns: list[str]) -> set[str]:
    """Those of ``columns`` (numbers with gaps to loopline) that a plain ``pandas.read_csv``
    of the file takes as text: a field of spaces only (``" "`` in a column of numbers) is a
    gap to :func:`read_table`, which skips the spaces at the start of a field, and text to a
    reader that keeps them. A row of the file as such a user has it (``df.to_dict("records")``)
    carries the column's numbers as text (``"29.85"``), and its gaps as ``" "``."""
    if not columns or table_format(path) != "csv":
        return set()
    sep = csv_delimiter(path)

    def read(encoding: str) -> pd.DataFrame:
        return pd.read_csv(path, sep=sep, usecols=list(columns), index_col=False, encoding=encoding)

    try:
        try:
            plain = read("utf-8")
        except UnicodeDecodeError:
            plain = read(csv_encoding(path))
    except (ValueError, pd.errors.ParserError):  # read_table has read it: names it cannot match
        return set()
    return {c for c in columns if c in plain.columns and not pd.api.types.is_numeric_dtype(plain[c])}


def _row_index(df: pd.DataFrame, column: str) -> bool:
    """The first column holds 0..n-1 or 1..n: a row index a CSV was saved with (pandas'
    ``to_csv`` default), kept as a column that ``loopline init`` recognises as an id."""
    col = df[column]
    if column != df.columns[0] or not pd.api.types.is_integer_dtype(col):
        return False
    start = int(col.iloc[0])
    return start in (0, 1) and bool((col.to_numpy() == np.arange(start, start + len(col))).all())


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


def blank_placeholders(df: pd.DataFrame, missing: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Gaps where a column of numbers holds one of its ``missing_values`` (``?``, or ``""``
    for blank text), so validate sees numbers and gaps; ``df``'s text is already stripped."""
    out = df
    for name, tokens in missing.items():
        if name not in df.columns or pd.api.types.is_numeric_dtype(df[name]):
            continue
        col = df[name]
        gap = col.notna() & col.astype(str).isin(list(tokens))
        if gap.any():
            out = out.copy() if out is df else out
            out[name] = col.where(~gap)
    return out


# ------------------------------------------------------------ values and row ids


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


def parse_boolean(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse true/false words (and 1/0) as 1.0/0.0; return (parsed, mask of present-but-unparseable)."""
    text = as_text(values).str.strip().str.lower()
    parsed = pd.Series(np.where(text.isin(_TRUE), 1.0, np.where(text.isin(_FALSE), 0.0, np.nan)),
                       index=values.index)
    return parsed, values.notna() & parsed.isna()


def parse_numeric(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse values as numbers; return (parsed floats, mask of present-but-unparseable)."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values.astype("float64"), pd.Series(False, index=values.index)
    text = values.astype(object).where(values.isna(), values.astype(str).str.strip())
    parsed = pd.to_numeric(text, errors="coerce").astype("float64")
    return parsed, values.notna() & parsed.isna()


def as_prepared(col: pd.Series, rule: ColumnRule | None) -> pd.Series:
    """A validated column as prepare casts it: booleans 1.0/0.0 and numbers as float64, the
    rest (a category, or a column without a rule) as canonical text, gaps kept."""
    if rule is not None and rule.type == "boolean":
        return parse_boolean(col)[0]
    if rule is not None and rule.numeric:
        return parse_numeric(col)[0]
    return pd.Series(as_text(col).to_numpy(), index=col.index, dtype=object)


# ------------------------------------------------------- prepared splits, model frame


def feature_columns(params: Params) -> tuple[list[str], list[str]]:
    """Numeric and categorical feature columns, in schema order."""
    return params.data.feature_columns(params.features.drop)


def xy(df: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, np.ndarray]:
    """Model frame and string labels of a prepared split."""
    from loopline.model.features import to_model_frame

    numeric, categorical = feature_columns(params)
    X = to_model_frame(df, numeric, categorical)
    y = df[params.data.target].astype(str).to_numpy()
    return X, y


def load_split(root: Path, params: Params, name: str) -> pd.DataFrame:
    """A prepared split (``train`` or ``test``) as written by the prepare stage."""
    return pd.read_parquet(Layout.of(root, params.paths).split(name))
