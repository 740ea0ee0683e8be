"""Reading the user's data and deciding everything ``loopline init`` writes.

Everything the user can get wrong (the directory, the artifact name, the target column and
its classes, the positive class) is checked here, before anything is written.

Each column gets a role (:func:`column_roles`): a unique identifier becomes ``id_column``,
the first date or timestamp ``order_column`` (a time-ordered split is offered), free text
and very high cardinality text, constant and empty columns are left out of the features
with a one-line note; ``--drop``, ``--id`` and ``--time`` override. The decisions are data
(:class:`Column`), rendered by :mod:`loopline.gitops.scaffold.render` and printed by init.

On few rows the default model's search gets leaves small enough to split (:func:`model_for_size`):
a tree needs twice ``min_samples_leaf`` rows to split at all, and the default's leaves (20, 40
rows) left a model of 60 rows one constant prediction, at the class prior.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from loopline.core.errors import LooplineError
from loopline.core.names import NAME_HINT, NAME_RE

FEATURE, TARGET, ID, ORDER, DROPPED = "feature", "target", "id", "order", "left out"
#: a unique column whose name says "identifier"
ID_NAME = re.compile(r"(^|[^a-z])(id|ids|key|uuid|guid|index|idx)([^a-z]|$)|^unnamed: ?\d+$|^row",
                     re.IGNORECASE)
#: text that starts like a date (2024-01-31, 31/01/2024, 2024/1/31 10:00)
DATE_TEXT = re.compile(r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})")
#: leaf sizes init offers a search on few rows: the largest three with room for 4 leaves per fold
LEAF_LADDER = (1, 2, 3, 5, 10, 20, 40)
TEST_SIZE = 0.2  # the split init writes into conf/data


@dataclass(frozen=True)
class Column:
    """What init decided for one column of the data, and why (one line)."""

    name: str
    role: str          # feature | target | id | order | left out
    kind: str          # numeric | categorical | text | date | empty
    note: str = ""

    def as_dict(self) -> dict:
        return {"column": self.name, "role": self.role, "kind": self.kind, "note": self.note}


@dataclass(frozen=True)
class ModelForSize:
    """The model option init writes when the data is too small for the default's leaves."""

    base: str                      # the packaged model option it starts from (hgb)
    leaves: tuple[int, ...]        # min_samples_leaf values of its search
    note: str                      # why, in one line

    def as_dict(self) -> dict:
        return {"base": self.base, "min_samples_leaf": list(self.leaves), "note": self.note}


def own_option(group: str, name: str) -> str:
    """The name of an instance's own option of a config group: ``name``, unless loopline
    packages an option of that name (data ``default.csv``), which it would shadow."""
    from loopline.config import defaults

    return f"{name}-{group}" if (defaults.DIR / group / f"{name}.yaml").is_file() else name


@dataclass(frozen=True)
class Plan:
    """Everything ``init`` will write, decided (and checked) before anything is written."""

    dest: Path
    data_file: Path
    data_name: str                 # the conf/data option: conf/data/<data_name>.yaml
    artifact: str
    target: str
    positive_class: str | None     # binary targets only
    classes: dict[str, int]        # class -> rows, most frequent first
    rows: int
    schema: dict = field(repr=False)
    example: dict = field(repr=False)  # one row's features, for the README's /predict call
    columns: tuple[Column, ...] = ()   # the decision per column, in the data's order
    split_method: str = "random"   # random | time (train on earlier rows, test on later)
    reading: tuple[str, ...] = ()  # how the file was read, where not as plain UTF-8 with commas
    model: ModelForSize | None = None  # None: loopline's default model option as it is
    unlabelled: int = 0            # rows without a label: kept in the file, left out of training

    @property
    def id_column(self) -> str | None:
        return next((c.name for c in self.columns if c.role == ID), None)

    @property
    def order_column(self) -> str | None:
        return next((c.name for c in self.columns if c.role == ORDER), None)

    @property
    def drop(self) -> list[str]:
        """Columns kept in the data (and its schema) but left out of the features."""
        return [c.name for c in self.columns if c.role == DROPPED]

    @property
    def features_option(self) -> str:
        """conf/features/<option>.yaml, written when init leaves columns out."""
        return own_option("features", self.data_name)

    @property
    def model_option(self) -> str:
        """conf/model/<option>.yaml, written when the data is too small for the default's leaves."""
        return own_option("model", self.data_name)

    @property
    def source(self) -> str:
        """The data file's path inside the instance, as conf/data names it."""
        return f"data/{self.data_file.name}"


# ----------------------------------------------------------------- names and checks


def slug(text: str) -> str:
    """Lower-case letters, digits and single '-', starting with a letter ('' if none).

    A non-empty slug follows the name rule of :mod:`loopline.core.names`.
    """
    s = re.sub(r"[^a-z0-9]+", "-", text.lower())
    return re.sub(r"^[^a-z]+", "", s).strip("-")


def artifact_name(dest: Path, name: str | None = None) -> str:
    """The registry artifact: ``--name`` (checked), else DIR's base name made valid."""
    if name is not None:
        if not NAME_RE.match(name):
            raise LooplineError(f"--name {name!r} is not a valid artifact name: use {NAME_HINT} "
                                "(e.g. churn)")
        return name
    return slug(dest.resolve().name) or "model"  # a slug follows the name rule


def check_dest(dest: Path) -> None:
    """DIR must not exist, or be an empty directory."""
    if dest.exists() and not dest.is_dir():
        raise LooplineError(f"{dest} exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()):
        raise LooplineError(f"{dest} is not empty: choose a new directory for the instance")


def read_data(path: Path):  # noqa: ANN201 (pandas is imported lazily)
    """The data as the ingest stage will see it (text normalised, ``row_id`` added).

    A ``row_id`` column of the data is loopline's row id's name: it is taken as the id
    column, so it must be one (unique, never empty)."""
    from loopline.pipeline.stages import ingest
    from loopline.pipeline.tabular import ROW_ID, read_table

    df = read_table(path)
    if ROW_ID in df.columns and (df[ROW_ID].isna().any() or df[ROW_ID].duplicated().any()):
        raise LooplineError(f"the data's column {ROW_ID!r} has repeated or empty values: "
                            f"loopline keeps each row's id under that name, so rename it")
    had = ROW_ID in df.columns
    out = ingest.ingest(df, ROW_ID if had else None, None)
    out.attrs["row_id_is_the_datas"] = had
    return out


def target_classes(df, target: str) -> dict[str, int]:  # noqa: ANN001
    """Rows per class of ``target``, most frequent first, as the schema names the classes.

    Rows without a label are not counted: ingest leaves them out of training.

    Raises:
        LooplineError: unknown column, or fewer than two classes.
    """
    from loopline.pipeline.schema import infer_schema

    if target not in df.columns:
        cols = ", ".join(str(c) for c in df.columns if c != "row_id")
        raise LooplineError(f"target {target!r} is not a column of the data (columns: {cols})")
    if df[target].isna().all():
        raise LooplineError(f"target {target!r} is empty in every row: nothing to learn from")
    names = infer_schema(df[[target]], target)["columns"][target]["categories"]  # regression: refused
    _check_label_text(df[target], target)
    from loopline.pipeline.tabular import as_text

    counts = as_text(df[target]).value_counts()
    classes = {c: int(counts.get(c, 0)) for c in sorted(names, key=lambda c: -counts.get(c, 0))}
    if len(classes) < 2:
        raise LooplineError(f"target {target!r} has only one class ({names[0]!r}): a "
                            "classifier needs at least 2")
    return classes


def _check_label_text(col, target: str) -> None:  # noqa: ANN001
    """Refuse labels whose plain text is not their canonical text.

    Validate, prepare and the schema name classes by their canonical text
    (:func:`loopline.pipeline.tabular.as_text`); a user reads them as ``str(value)``. The
    two agree for words and integers, and whole floats (``1.0``) are their integers (``1``)
    everywhere, so what is left to refuse is a column of other values. A True/False target
    is a column of booleans, whose classes are ``true`` and ``false`` everywhere (the
    schema, the model, the service's answers and its feedback).
    """
    import pandas as pd

    from loopline.pipeline.tabular import as_text

    values = col.dropna()
    if pd.api.types.is_bool_dtype(col) or (pd.api.types.is_float_dtype(col)
                                            and bool((values == values.round()).all())):
        return  # booleans: true/false; whole floats (1.0, as a writer with gaps left them): 1
    plain, canonical = values.astype(str), as_text(values)
    odd = plain[plain != canonical]
    if len(odd):
        raise LooplineError(f"target {target!r} holds {odd.iloc[0]!r}, which loopline reads as "
                            f"{canonical[odd.index[0]]!r}: store the classes as words or integers")


def positive_class(classes: dict[str, int], target: str, requested: str | None) -> str | None:
    """``--positive-class`` (checked), else ``true`` or ``1`` of a true/false or 1/0 target,
    else the minority class (ties: first by name); None for more than two classes, whose
    metrics are macro averages over every class."""
    if len(classes) > 2:
        if requested is not None:
            raise LooplineError(f"--positive-class applies to a target with two classes; "
                                f"{target!r} has {len(classes)} (metrics are macro averages)")
        return None
    if requested is None:
        for yes, no in (("true", "false"), ("1", "0")):
            if set(classes) == {yes, no}:
                return yes
        return min(sorted(classes), key=lambda c: classes[c])
    if requested not in classes:
        raise LooplineError(f"positive class {requested!r} is not a value of target {target!r} "
                            f"(values: {', '.join(sorted(classes))})")
    return requested


def example_record(df, schema: dict, target: str, features: list[str] | None = None) -> dict:  # noqa: ANN001
    """The features of the first complete row (else of the first row, gaps left out)."""
    features = list(schema["columns"]) if features is None else features
    complete = df[features].dropna()
    row = df.loc[complete.index[0]] if len(complete) else df.iloc[0]
    out = {}
    for name, rule in schema["columns"].items():
        value = row[name]
        if name == target or name not in features or value is None or value != value:  # NaN != NaN
            continue
        value = value.item() if hasattr(value, "item") else value
        if rule.get("missing_values") is not None and isinstance(value, str):  # "3.0", "?"
            if value.strip() in rule["missing_values"]:
                continue
            value = float(value)
        if rule["type"] == "boolean":  # True/False with gaps is text after ingest
            value = str(value).strip().lower() == "true"
        out[name] = int(value) if rule["type"] == "integer" else value
    return out


# ------------------------------------------------------------------------- columns


def _is_date(col) -> bool:  # noqa: ANN001
    """Text whose values (nearly all) read as dates or timestamps, or a datetime dtype."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(col):
        return True
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return False
    values = col.dropna().astype(str)
    if values.empty or not values.head(20).str.match(DATE_TEXT).all():
        return False
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not infer format": then it is no date
        parsed = pd.to_datetime(values, errors="coerce")
    return bool(parsed.notna().mean() >= 0.99)


def _is_identifier(col, name: str, rows: int) -> bool:  # noqa: ANN001
    """A column with a distinct value on every row that says so: an id-like name, a run
    of consecutive whole numbers (a row index), or text codes without spaces."""
    import numpy as np
    import pandas as pd

    if rows < 2 or col.isna().any() or col.nunique() != rows:
        return False
    if ID_NAME.search(name):
        return True
    if pd.api.types.is_bool_dtype(col):
        return False
    if pd.api.types.is_numeric_dtype(col):
        values = col.astype("float64")
        whole = bool(np.all(values == np.round(values)))
        return whole and float(values.max() - values.min()) == rows - 1
    return not col.astype(str).str.contains(r"\s").any()


def _kind(rule: dict) -> str:
    return "numeric" if rule["type"] in ("integer", "float", "boolean") else "categorical"


def column_roles(df, target: str, schema: dict, *, drop: tuple[str, ...] = (),  # noqa: ANN001
                 id_column: str | None = None, time_column: str | None = None) -> list[Column]:
    """The role of every column (module docstring); the overrides are checked here.

    Raises:
        LooplineError: an override names an unknown column, the target, or a column that
            cannot be what it is asked to be (an id with repeats, a time that is no date).
    """
    import pandas as pd

    from loopline.pipeline.schema import MAX_CATEGORIES

    names = [c for c in schema["columns"]]
    for opt, cols in (("--drop", drop), ("--id", [id_column] if id_column else []),
                      ("--time", [time_column] if time_column else [])):
        for c in cols:
            if c not in names:
                raise LooplineError(f"{opt} {c!r} is not a column of the data (columns: "
                                    f"{', '.join(names)})")
            if c == target:
                raise LooplineError(f"{opt} {c!r} is the target")
    rows = len(df)
    if id_column and (df[id_column].isna().any() or df[id_column].nunique() != rows):
        raise LooplineError(f"--id {id_column!r} is not a unique identifier: it has repeated or "
                            "empty values")
    if time_column and not (pd.api.types.is_numeric_dtype(df[time_column])
                            or _is_date(df[time_column])):
        raise LooplineError(f"--time {time_column!r} holds values that are neither dates nor "
                            "numbers")
    out, have_id, have_order = [], id_column, time_column
    for name in names:
        rule, col = schema["columns"][name], df[name]
        kind = _kind(rule)
        if name == target:
            out.append(Column(name, TARGET, "categorical", f"{len(rule['categories'])} classes"))
        elif name in drop:
            out.append(Column(name, DROPPED, kind, "--drop"))
        elif name == id_column:
            out.append(Column(name, ID, kind, "unique identifier (--id): the row id, not a feature"))
        elif name == time_column:
            out.append(Column(name, ORDER, "date", "time order (--time): rows sorted by it, "
                                                   "split: time"))
        elif col.notna().sum() == 0:
            out.append(Column(name, DROPPED, "empty", "every value is missing"))
        elif col.nunique(dropna=True) == 1:
            out.append(Column(name, DROPPED, kind, f"constant ({col.dropna().iloc[0]!r})"))
        elif rule.get("missing_values") is not None:  # numbers, whatever their text looks like
            marks = " or ".join("blank text" if m == "" else repr(m) for m in rule["missing_values"])
            out.append(Column(name, FEATURE, kind, f"numbers, {marks} for gaps"))
        elif _is_identifier(col, name, rows):
            if have_id:
                out.append(Column(name, DROPPED, kind, "another unique identifier"))
            else:
                have_id = name
                out.append(Column(name, ID, kind, "unique identifier: the row id, not a feature"))
        elif kind == "categorical" and _is_date(col):
            if have_order:
                out.append(Column(name, DROPPED, "date", "another date column"))
            else:
                have_order = name
                out.append(Column(name, ORDER, "date", "dates: rows sorted by it (split.method: "
                                                       "time would test on the latest rows)"))
        elif kind == "categorical" and rule.get("categories") is None:
            n = col.nunique(dropna=True)
            out.append(Column(name, DROPPED, "text", f"free text ({n:,} distinct values, "
                                                     f"over {MAX_CATEGORIES} for a category)"))
        else:
            out.append(Column(name, FEATURE, kind))
    return out


def make_plan(dest: Path, data: Path, target: str, *, positive: str | None = None,
              name: str | None = None, drop: tuple[str, ...] = (), id_column: str | None = None,
              time_column: str | None = None) -> Plan:
    """Check the user's input and decide everything ``init`` writes; writes nothing."""
    from loopline.pipeline.schema import infer_column, infer_file_schema

    check_dest(dest)
    artifact = artifact_name(dest, name)
    df = read_data(data)
    had_row_id = df.attrs.get("row_id_is_the_datas", False)
    if had_row_id and id_column:
        raise LooplineError(f"--id {id_column!r}: the data's column 'row_id' is its id (loopline "
                            "keeps each row's id under that name); rename one of them")
    classes = target_classes(df, target)
    schema = infer_file_schema(df, target, data)
    columns = column_roles(df, target, schema, drop=tuple(drop), id_column=id_column,
                           time_column=time_column)
    if had_row_id:
        columns.insert(0, Column("row_id", ID, _kind(infer_column(df["row_id"])),
                                 "unique identifier: the row id, not a feature"))
    features = [c.name for c in columns if c.role == FEATURE]
    if not features:
        why = "; ".join(f"{c.name!r}: {c.role}, {c.note or c.kind}" for c in columns if c.role != TARGET)
        raise LooplineError(f"no column is left to learn from ({why or 'the data has only the target'}). "
                            "loopline learns from numbers, categories and True/False columns, "
                            "not from free text or ids; see --drop, --id and --time")
    return Plan(dest=dest, data_file=data, data_name=slug(data.name.split(".")[0]) or "data",
                artifact=artifact, target=target,
                positive_class=positive_class(classes, target, positive), classes=classes,
                rows=len(df), schema=schema, example=example_record(df, schema, target, features),
                columns=tuple(columns), split_method="time" if time_column else "random",
                reading=reading(data), model=model_for_size(sum(classes.values())),
                unlabelled=int(df[target].isna().sum()))


def model_for_size(rows: int, test_size: float = TEST_SIZE) -> ModelForSize | None:
    """Smaller leaves for the default model's search when the data is too small for its own.

    A tree splits a node only when both sides keep ``min_samples_leaf`` rows; the search
    fits on the training rows less one fold. Leaves are kept where a fold has room for four
    of them; when the default's leaves do not all fit, the search gets the largest three
    sizes that do (:data:`LEAF_LADDER` and the default's own). None when they all fit, or
    the default model has no ``min_samples_leaf``.
    """
    import math

    import yaml

    from loopline.config import defaults
    from loopline.gitops.scaffold.sources import CONFIG_YAML, shared_files

    chosen = {str(k): str(v) for entry in yaml.safe_load(shared_files()[CONFIG_YAML])["defaults"]
              if isinstance(entry, dict) for k, v in entry.items()}
    model_file = defaults.DIR / "model" / f"{chosen.get('model')}.yaml"
    search_file = defaults.DIR / "search" / f"{chosen.get('search')}.yaml"
    if not (model_file.is_file() and search_file.is_file()):
        return None
    leaves = (yaml.safe_load(model_file.read_text()).get("search_space") or {}).get("min_samples_leaf")
    cv = yaml.safe_load(search_file.read_text()).get("cv")
    if not leaves or not isinstance(cv, int) or cv < 2:
        return None
    train = rows - math.ceil(rows * test_size)  # as train_test_split counts the test rows
    fold = train - math.ceil(train / cv)        # the fewest rows a search fit sees
    room = max(fold // 4, 1)
    too_big = [v for v in leaves if v > room]
    if not too_big:
        return None
    fit = sorted({v for v in (*LEAF_LADDER, *leaves) if v <= room})[-3:]
    note = (f"each of the search's {cv} folds fits on {fold} of the {rows:,} rows, too few for "
            f"leaves of {', '.join(map(str, too_big))}")
    return ModelForSize(chosen["model"], tuple(fit), note)


def reading(path: Path) -> tuple[str, ...]:
    """How a CSV was read, where it was not UTF-8 text with ``,`` between fields."""
    from loopline.pipeline.tabular import csv_delimiter, csv_encoding, table_format

    if table_format(path) != "csv":
        return ()
    sep, encoding = csv_delimiter(path), csv_encoding(path)
    names = {"\t": "tab", ";": "';'", "|": "'|'"}
    out = (f"fields split by {names[sep]}",) if sep in names and path.suffix.lower() != ".tsv" else ()
    return out + ((f"{encoding} text, not UTF-8",) if encoding != "utf-8" else ())
