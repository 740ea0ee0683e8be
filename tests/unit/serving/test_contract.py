"""The input contract of /predict and /predict_batch (serving/contract.py)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from loopline.model import feeds as onnx_feeds
from loopline.serving import contract
from tests.helpers.contract import GOOD, INPUTS


def validator(inputs: dict, max_batch: int) -> TypeAdapter:
    """Validation of a /predict payload's records, as BentoML does it in the service."""
    return TypeAdapter(contract.records_type(contract.record_type(inputs), max_batch))


@pytest.fixture(scope="module")
def adapter():
    return validator(INPUTS, max_batch=3)


def errors(adapter, payload) -> list[tuple]:
    with pytest.raises(ValidationError) as info:
        adapter.validate_python(payload)
    return [(e["loc"], e["type"]) for e in info.value.errors()]


def test_contract_accepts_valid_and_nullable_records(adapter) -> None:
    assert adapter.validate_python([GOOD]) == [GOOD]
    sparse = {"Age": 18, "Records": "yes"}  # nullable fields may be left out
    assert adapter.validate_python([sparse, {**sparse, "Income": None, "Home": None}])
    assert adapter.validate_python([{**GOOD, "Income": 3}])[0]["Income"] == 3.0  # int is a number


def test_integer_columns_take_whole_floats(adapter) -> None:
    """pandas reads an integer column with gaps as floats: its records send 30.0."""
    assert adapter.validate_python([{**GOOD, "Age": 30.0}])[0]["Age"] == 30
    assert TypeAdapter(contract.columns_type(INPUTS, 3)).validate_python(
        {"Age": [30.0, 41], "Records": ["no", "yes"]})["Age"] == [30, 41]


def test_text_is_taken_without_surrounding_spaces_as_ingest_reads_the_data(adapter) -> None:
    """A file written with ", " between fields holds " rent": the model's category is "rent"."""
    assert adapter.validate_python([{**GOOD, "Home": " rent", "Records": "no "}])[0] == GOOD
    cols = TypeAdapter(contract.columns_type(INPUTS, 3)).validate_python(
        {"Age": [30], "Records": [" yes"], "Home": ["owner  "]})
    assert cols["Records"] == ["yes"] and cols["Home"] == ["owner"]
    assert errors(adapter, [{**GOOD, "Home": " re nt"}]) == [((0, "Home"), "literal_error")]
    # a field of spaces: a gap to ingest, " " to a plain CSV reader; a gap where one may be
    assert adapter.validate_python([{**GOOD, "Home": "  "}])[0]["Home"] is None
    assert errors(adapter, [{**GOOD, "Records": " "}]) == [((0, "Records"), "literal_error")]
    assert errors(adapter, [{**GOOD, "Home": 5}]) == [((0, "Home"), "literal_error")]


def test_a_whole_number_in_text_is_the_category_training_read() -> None:
    """A category column of numbers written as text: training reads "3.0" as "3"."""
    import pandas as pd

    from loopline.pipeline.tabular import as_text

    sent = ["3.0", " 6.0", "?", "7", "1e1", "-0.0", "3.5", "nan", "+2", ".5", "0x1", "-"]
    cats = sorted(set(as_text(pd.Series([s.strip() for s in sent], dtype=object))))
    inputs = {"thal": {"kind": "categorical", "type": "category", "nullable": False,
                       "categories": cats}}
    got = [r["thal"] for r in validator(inputs, 20).validate_python([{"thal": s} for s in sent])]
    assert got == list(as_text(pd.Series([s.strip() for s in sent], dtype=object)))
    assert got[:6] == ["3", "6", "?", "7", "10", "0"]


def test_numbers_whose_gaps_the_file_marks_with_text_are_taken_as_text_too() -> None:
    """"?" or " " among numbers makes pandas read the column as text ("29.85"): such a
    column (``missing_values``) takes its numbers as text and the placeholder as a gap;
    other text, and text for a column without placeholders, is still an error."""
    inputs = {"total": {"kind": "numeric", "type": "float", "nullable": True, "min": 0,
                        "missing_values": [""]},
              "ca": {"kind": "numeric", "type": "integer", "nullable": True, "min": 0,
                     "missing_values": ["?"]},
              "n": {"kind": "numeric", "type": "integer", "nullable": False}}
    sent = [{"total": "29.85", "ca": "3.0", "n": 1}, {"total": " ", "ca": "?", "n": 2},
            {"total": 5, "ca": None, "n": 3}]
    got = validator(inputs, 3).validate_python(sent)
    assert [(r["total"], r["ca"]) for r in got] == [(29.85, 3.0), (None, None), (5.0, None)]
    assert type(got[0]["total"]) is float  # logged and fed as numbers
    cols = TypeAdapter(contract.columns_type(inputs, 3)).validate_python(
        {"total": ["1.5", " ", None], "ca": ["?", "2", 1], "n": [1, 2, 3]})
    assert cols["total"] == [1.5, None, None] and cols["ca"] == [None, 2.0, 1.0]
    for bad, kind in (({"total": "abc"}, "float_type"), ({"total": "-1"}, "greater_than_equal"),
                      ({"total": "nan"}, "finite_number"), ({"total": "1_000"}, "float_type"),
                      ({"ca": "2.5"}, "multiple_of"), ({"n": "5"}, "float_type")):
        found = errors(validator(inputs, 3), [{"n": 1, **bad}])
        assert ((0, next(iter(bad))), kind) in found, (bad, found)
    schema = TypeAdapter(contract.record_type(inputs)).json_schema()["properties"]["total"]
    assert {"type": "string"} in schema["anyOf"] and {"type": "null"} in schema["anyOf"]


def test_boolean_columns_take_true_and_false_as_the_model_reads_them() -> None:
    inputs = {"vip": {"kind": "numeric", "type": "boolean", "nullable": True},
              "n": {"kind": "numeric", "type": "integer", "nullable": False}}
    records = validator(inputs, 3).validate_python([{"vip": True, "n": 1}, {"vip": False, "n": 2},
                                                    {"vip": None, "n": 3}])
    assert [r["vip"] for r in records] == [1.0, 0.0, None]
    assert type(records[0]["vip"]) is float  # logged and fed as the 0/1 of the prepared data
    feeds = onnx_feeds.from_records(records, ["vip", "n"], [])
    assert np.isnan(feeds["vip"][2, 0]) and feeds["vip"][:2, 0].tolist() == [1.0, 0.0]
    cols = TypeAdapter(contract.columns_type(inputs, 3)).validate_python(
        {"vip": [True, None], "n": [1, 2]})
    assert cols["vip"] == [1.0, None]
    assert [r["vip"] for r in validator(inputs, 3).validate_python(
        [{"vip": 1, "n": 1}, {"vip": 0.0, "n": 1}])] == [1.0, 0.0]  # as booleans were served before
    for bad in ("true", 2, 0.5, "yes"):
        assert errors(validator(inputs, 3), [{"vip": bad, "n": 1}])[0][0] == (0, "vip")


@pytest.mark.parametrize("bad, loc, kind", [
    ({**GOOD, "Age": "30"}, (0, "Age"), "float_type"),            # no string coercion
    ({**GOOD, "Age": 30.5}, (0, "Age"), "multiple_of"),           # integer column
    ({**GOOD, "Age": True}, (0, "Age"), "float_type"),            # no bool coercion
    ({**GOOD, "Age": 17}, (0, "Age"), "greater_than_equal"),      # range
    ({**GOOD, "Income": -1.0}, (0, "Income"), "greater_than_equal"),
    ({**GOOD, "Income": float("inf")}, (0, "Income"), "finite_number"),
    ({**GOOD, "Home": "castle"}, (0, "Home"), "literal_error"),   # category
    ({**GOOD, "Records": None}, (0, "Records"), "literal_error"),  # not nullable
    ({**GOOD, "Extra": 1}, (0, "Extra"), "extra_forbidden"),      # unknown field
    ({k: v for k, v in GOOD.items() if k != "Age"}, (0, "Age"), "missing"),
])
def test_contract_rejects_with_field_level_errors(adapter, bad, loc, kind) -> None:
    assert (loc, kind) in errors(adapter, [bad])


def test_integers_beyond_float64_precision_are_rejected(adapter) -> None:
    unbounded = validator({"n": {"kind": "numeric", "type": "integer", "nullable": False}}, 2)
    assert unbounded.validate_python([{"n": 2**53}]) == [{"n": 2**53}]
    with pytest.raises(ValidationError):
        unbounded.validate_python([{"n": 10**20}])


def test_contract_bounds_the_batch(adapter) -> None:
    assert errors(adapter, []) == [((), "too_short")]
    assert errors(adapter, [GOOD] * 4) == [((), "too_long")]


def test_columns_contract_and_lengths() -> None:
    from pydantic import TypeAdapter

    ta = TypeAdapter(contract.columns_type(INPUTS, max_batch=3))
    ok = {"Age": [30, 40], "Records": ["no", "yes"], "Home": [None, "rent"]}
    assert ta.validate_python(ok) == ok  # Income (nullable) may be left out
    with pytest.raises(ValidationError) as info:
        ta.validate_python({"Age": [30, "x"], "Records": ["no", None], "Zip": [1]})
    locs = {e["loc"] for e in info.value.errors()}
    assert {("Age", 1), ("Records", 1), ("Zip",)} <= locs
    with pytest.raises(ValidationError):
        ta.validate_python({"Age": [30] * 4, "Records": ["no"] * 4})  # over max_batch
    assert contract.column_length(ok) == (2, [])
    n, bad = contract.column_length({"Age": [1, 2, 3], "Records": ["no"], "Home": [None] * 3})
    assert n == 3 and [b["loc"] for b in bad] == [["columns", "Records"]]
    feeds = onnx_feeds.from_columns(ok, 2, ["Age", "Income"], ["Home"])
    assert np.isnan(feeds["Income"]).all() and feeds["Home"].tolist() == [[""], ["rent"]]


def test_the_files_other_columns_are_accepted_and_ignored() -> None:
    """A row of the training file carries its target, id and dropped columns: accepted as
    they are (the card's passthrough), while an unknown field is still refused."""
    ta = validator_with_passthrough = TypeAdapter(contract.records_type(
        contract.record_type(INPUTS, passthrough=["Status", "customer id", "Age"]), 3))
    row = {**GOOD, "Status": "bad", "customer id": 17}
    assert validator_with_passthrough.validate_python([row]) == [row]
    with pytest.raises(ValidationError):
        ta.validate_python([{**row, "Age": "30"}])  # an input stays an input
    with pytest.raises(ValidationError):
        ta.validate_python([{**row, "Zip": 1}])
    cols = TypeAdapter(contract.columns_type(INPUTS, 3, passthrough=["Status"]))
    assert cols.validate_python({"Age": [30], "Records": ["no"], "Status": ["bad"]})
