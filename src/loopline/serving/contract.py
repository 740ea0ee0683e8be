"""The request contract of a model: a pydantic type made from the card's ``inputs``.

The export stage writes, for every model input, its kind (numeric or categorical), type,
nullability, range and allowed categories, taken from the training schema. This module
turns that into a ``TypedDict`` that pydantic validates in Rust (records stay plain dicts,
no model objects per row); :mod:`loopline.model.feeds` turns validated records or columns
into onnxruntime feeds. The feedback and response types of the service are here too.

Numbers are strict: ``"30"`` or ``true`` for a number is an error, not a coercion; an
integer column takes whole numbers, written as integers or as floats (``5.0``: pandas
reads an integer column with gaps as floats, so ``df.to_dict("records")`` of the training
file sends them so), and refuses ``5.5``; a boolean column takes ``true`` and ``false``, or
1 and 0 (read as 1.0 and 0.0, as the model was trained), and refuses ``"true"``. Nullable
columns (those the imputation handles) may be null or left out; the others are required.
Text is taken as training read it: without surrounding spaces, and a whole number in
its integer form (``"3.0"`` is the category ``"3"`` of a column of categories). A column of
numbers whose gaps the file marks with text (its ``missing_values``: ``"?"``, or blank text,
which make a CSV reader take the whole column as text) takes its numbers as text too
(``"29.85"``), and the placeholder as a gap; other text there is still an error.
Columns of the training file that are not inputs (the target, the id and order columns,
columns left out of the features: the card's ``passthrough``) may be sent and are ignored,
so a row of the user's own file is a valid record; any other field is rejected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, NotRequired, Required

from pydantic import BeforeValidator, ConfigDict, Field, with_config
from typing_extensions import TypedDict

# A Python identifier is not required of a column name, so records are TypedDicts built
# with the functional syntax, which takes any string key.


_NUMBER_START = frozenset("0123456789+-.")


def _category_text(value: Any) -> Any:
    """Text as ingest and prepare read it (``as_text``): without surrounding spaces, and a
    whole number in its integer form ("3.0" is the category "3"); other values as they are."""
    if type(value) is not str:
        return value
    text = value.strip()
    if text[:1] in _NUMBER_START:
        try:
            number = float(text)
        except ValueError:
            return text
        if number.is_integer() and abs(number) < 2**53:
            return str(int(number))
    return text


def _category(categories: tuple[str, ...], nullable: bool = False) -> Any:
    """One of ``categories``, as sent or as :func:`_category_text` reads it; of a nullable
    column, blank text is a gap too (a field of spaces, which ingest reads as one and a
    plain CSV reader as the text ``" "``).

    The exact value is checked in Rust first; only a value that is not a category as sent
    reaches the Python reading (a hook on every value cost 0.85 ms per 1,000 records of
    five categorical columns, half again pydantic's own validation). Either way a wrong
    value gets one ``literal_error`` naming the categories, as a ``Literal`` gives.
    """
    from pydantic_core import PydanticCustomError, core_schema

    allowed = frozenset(categories)
    quoted = [repr(c) for c in categories]
    expected = f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]

    def read(value: str) -> str | None:
        text = _category_text(value)
        if text in allowed:
            return text
        if nullable and not text:
            return None
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})

    class Category:
        @classmethod
        def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
            return core_schema.union_schema(
                [core_schema.literal_schema(list(categories)),
                 core_schema.no_info_after_validator_function(read, core_schema.str_schema(strict=True))],
                mode="left_to_right", custom_error_type="literal_error",
                custom_error_context={"expected": expected})

        @classmethod
        def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> Any:
            return handler(core_schema.literal_schema(list(categories)))

    return Category


def _bool_as_number(value: Any) -> Any:
    return float(value) if value is True or value is False else value


def _value_type(name: str, spec: Mapping[str, Any]) -> Any:
    """The pydantic type of one value of an input column (None excluded)."""
    kind, typ = spec.get("kind"), spec.get("type")
    bounds = {k: spec[src] for k, src in (("ge", "min"), ("le", "max")) if spec.get(src) is not None}
    if typ == "integer":  # a float64 input holds integers exactly up to 2**53; JSON has no limit
        bounds.setdefault("ge", -(2**53))
        bounds.setdefault("le", 2**53)
    if kind == "categorical":
        cats = spec.get("categories")
        # the category as training read it: " Private" is "Private", "3.0" (a column of
        # numbers and "?") is "3"; a row of the file is sent so
        base = (_category(tuple(str(c) for c in cats), bool(spec.get("nullable"))) if cats
                else Annotated[str, Field(strict=True), BeforeValidator(_category_text)])
    elif kind == "numeric" and typ == "boolean":
        # true/false (what a True/False column of the file gives) or 1/0, as the 1.0/0.0 the
        # model, the log and the monitor's reference (the prepared data) hold
        base = Annotated[float, Field(strict=True, ge=0, le=1, multiple_of=1),
                         BeforeValidator(_bool_as_number)]
    elif kind == "numeric" and typ == "integer":  # validated in Rust: multiple_of, no Python hook
        base = Annotated[float, Field(strict=True, allow_inf_nan=False, multiple_of=1, **bounds)]
    elif kind == "numeric":
        base = Annotated[float, Field(strict=True, allow_inf_nan=False, **bounds)]
    else:
        raise ValueError(f"input {name!r} has an unknown kind {kind!r} in the model card")
    return base


def _number_text(markers: frozenset[str]) -> Any:
    """A reading of text sent for a number (``"29.85"``), for a column of numbers whose
    placeholders of gaps make a CSV reader take it as text (``missing_values``: ``?``, or
    ``""`` for blank text): a placeholder or blank text is a gap, a number's text the
    number; other text is left for the number type to refuse."""

    def read(value: Any) -> Any:
        if type(value) is not str:
            return value
        text = value.strip()
        if not text or text in markers:
            return None
        if "_" in text:  # Python's float() takes "1_000", which no data reader does
            return value
        try:
            return float(text)
        except ValueError:
            return value

    return read


def _gaps_as_text(spec: Mapping[str, Any], value: Any) -> Any:
    """``value`` (the type of a value or null) reading :func:`_number_text` first, for a
    column with ``missing_values``; else ``value`` as it is."""
    markers = spec.get("missing_values")
    if markers is None:
        return value
    return Annotated[value, BeforeValidator(_number_text(frozenset(markers)),
                                            json_schema_input_type=value | str)]


def _field_type(name: str, spec: Mapping[str, Any]) -> Any:
    """The pydantic type of one input column in a record."""
    base = _value_type(name, spec)
    if spec.get("nullable"):
        return NotRequired[_gaps_as_text(spec, base | None)]
    return Required[_gaps_as_text(spec, base)]


def _passthrough(inputs: Mapping[str, Any], passthrough: Sequence[str]) -> dict[str, Any]:
    """Fields accepted as anything and ignored (columns of the file that are not inputs)."""
    return {c: NotRequired[Any] for c in passthrough if c not in inputs}


def record_type(inputs: Mapping[str, Mapping[str, Any]], name: str = "Record",
                passthrough: Sequence[str] = ()) -> type:
    """A ``TypedDict`` for one record of the model's inputs (other fields forbidden, but
    those of ``passthrough``, which are ignored)."""
    if not inputs:
        raise ValueError("the model card lists no inputs")
    fields = {col: _field_type(col, spec) for col, spec in inputs.items()}
    fields.update(_passthrough(inputs, passthrough))
    td = TypedDict(name, fields)  # type: ignore[misc]
    return with_config(ConfigDict(extra="forbid"))(td)


def records_type(record: type, max_batch: int) -> Any:
    """A non-empty list of records, at most ``max_batch`` long."""
    return Annotated[list[record], Field(min_length=1, max_length=max_batch)]  # type: ignore[valid-type]


def columns_type(inputs: Mapping[str, Mapping[str, Any]], max_batch: int,
                 name: str = "Columns", passthrough: Sequence[str] = ()) -> type:
    """A ``TypedDict`` of columns (``{feature: [value, ...]}``) for batch scoring.

    Each column is validated as a list of scalars, about ten times faster than the same
    rows as records. Nullable columns may hold nulls or be left out (all missing); equal
    lengths are checked by :func:`column_length`.
    """
    fields = {}
    for col, spec in inputs.items():
        value = _value_type(col, spec)
        if spec.get("nullable"):
            value = value | None
        value = _gaps_as_text(spec, value)
        column = Annotated[list[value], Field(min_length=1, max_length=max_batch)]
        fields[col] = NotRequired[column] if spec.get("nullable") else Required[column]
    fields.update(_passthrough(inputs, passthrough))
    td = TypedDict(name, fields)  # type: ignore[misc]
    return with_config(ConfigDict(extra="forbid"))(td)


def column_length(columns: Mapping[str, Sequence[Any]]) -> tuple[int, list[dict]]:
    """The common length of the columns, and an error entry per column that differs."""
    lengths = {k: len(v) for k, v in columns.items()}
    if not lengths:
        return 0, [{"type": "missing", "loc": ["columns"], "msg": "no columns given"}]
    n = max(set(lengths.values()), key=list(lengths.values()).count)
    bad = [{"type": "length", "loc": ["columns", k], "msg": f"has {m} values where the other "
            f"columns have {n}"} for k, m in lengths.items() if m != n]
    return n, bad


class ColumnRecords(Sequence):
    """Columns seen as a sequence of records (the inference log stores the columns as such)."""

    def __init__(self, columns: Mapping[str, Sequence[Any]], n: int) -> None:
        self.columns, self.n = columns, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self.n))]
        return {k: v[i] for k, v in self.columns.items()}


def feedback_type(classes: Sequence[str]) -> Any:
    """A non-empty list of feedback items ``{request_id, label, index}`` (labels of ``classes``)."""
    item = TypedDict("FeedbackItem", {  # type: ignore[misc]
        "request_id": Required[Annotated[str, Field(min_length=1, max_length=128)]],
        "label": Required[Literal[tuple(str(c) for c in classes)]],
        "index": NotRequired[Annotated[int, Field(ge=0, le=10_000_000)]],
    })
    items = list[item]  # type: ignore[valid-type]
    return Annotated[items, Field(min_length=1, max_length=100_000)]


class Prediction(TypedDict):
    """One ``/predict`` answer (documents the response; the body is written with orjson)."""

    request_id: str
    model_version: str
    predictions: list[dict[str, Any]]
