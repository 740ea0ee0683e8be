"""Reading the user's data and deciding everything ``loopline init`` writes.

Everything the user can get wrong (the directory, the artifact name, the target column and
its classes, the positive class) is checked here, before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from loopline.core.errors import LooplineError
from loopline.core.names import NAME_HINT, NAME_RE


@dataclass(frozen=True)
class Plan:
    """Everything ``init`` will write, decided (and checked) before anything is written."""

    dest: Path
    data_file: Path
    data_name: str                 # the conf/data option: conf/data/<data_name>.yaml
    artifact: str
    target: str
    positive_class: str
    classes: dict[str, int]        # class -> rows, most frequent first
    rows: int
    schema: dict = field(repr=False)
    example: dict = field(repr=False)  # one row's features, for the README's /predict call

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
    """The data as the ingest stage will see it (text normalised, ``row_id`` added)."""
    from loopline.pipeline.stages import ingest
    from loopline.pipeline.tabular import read_table

    return ingest.ingest(read_table(path), None, None)


def target_classes(df, target: str) -> dict[str, int]:  # noqa: ANN001
    """Rows per class of ``target``, most frequent first, as the schema names the classes.

    Raises:
        LooplineError: unknown column, empty target values, or fewer than two classes.
    """
    from loopline.pipeline.schema import infer_schema

    if target not in df.columns:
        cols = ", ".join(str(c) for c in df.columns if c != "row_id")
        raise LooplineError(f"target {target!r} is not a column of the data (columns: {cols})")
    empty = int(df[target].isna().sum())
    if empty:
        raise LooplineError(f"target {target!r} has {empty} empty value(s): remove those rows "
                            "or fill them before `loopline init`")
    _check_label_text(df[target], target)
    names = infer_schema(df[[target]], target)["columns"][target]["categories"]
    counts = df[target].astype(str).value_counts()
    classes = {c: int(counts.get(c, 0)) for c in sorted(names, key=lambda c: -counts.get(c, 0))}
    if len(classes) < 2:
        raise LooplineError(f"target {target!r} has only one class ({names[0]!r}): a "
                            "classifier needs at least 2")
    return classes


def _check_label_text(col, target: str) -> None:  # noqa: ANN001
    """Refuse labels whose plain text is not their canonical text (True, 1.0, "01").

    The schema names classes by ``str(value)`` while validate and prepare compare labels
    by their canonical text (:func:`loopline.pipeline.tabular.as_text`); the two agree for
    words and integers only, so any other target would fail validation at the first run.
    """
    from loopline.pipeline.tabular import as_text

    values = col.dropna()
    plain, canonical = values.astype(str), as_text(values)
    odd = plain[plain != canonical]
    if len(odd):
        raise LooplineError(f"target {target!r} holds {odd.iloc[0]!r}, which loopline reads as "
                            f"{canonical[odd.index[0]]!r}: store the classes as words or integers")


def positive_class(classes: dict[str, int], target: str, requested: str | None) -> str:
    """``--positive-class`` (checked), else the minority class (ties: first by name)."""
    if requested is None:
        return min(sorted(classes), key=lambda c: classes[c])
    if requested not in classes:
        raise LooplineError(f"positive class {requested!r} is not a value of target {target!r} "
                            f"(values: {', '.join(sorted(classes))})")
    return requested


def example_record(df, schema: dict, target: str) -> dict:  # noqa: ANN001
    """The features of the first complete row (else of the first row, gaps left out)."""
    complete = df.dropna()
    row = (complete if len(complete) else df).iloc[0]
    out = {}
    for name, rule in schema["columns"].items():
        value = row[name]
        if name == target or value is None or value != value:  # NaN != NaN
            continue
        value = value.item() if hasattr(value, "item") else value
        out[name] = int(value) if rule["type"] == "integer" else value
    return out


def make_plan(dest: Path, data: Path, target: str, *, positive: str | None = None,
              name: str | None = None) -> Plan:
    """Check the user's input and decide everything ``init`` writes; writes nothing."""
    from loopline.pipeline.schema import infer_schema

    check_dest(dest)
    artifact = artifact_name(dest, name)
    df = read_data(data)
    classes = target_classes(df, target)
    schema = infer_schema(df, target)
    return Plan(dest=dest, data_file=data, data_name=slug(data.name.split(".")[0]) or "data",
                artifact=artifact, target=target,
                positive_class=positive_class(classes, target, positive), classes=classes,
                rows=len(df), schema=schema, example=example_record(df, schema, target))
