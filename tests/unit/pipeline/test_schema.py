"""Unit tests of schema inference and its YAML output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from loopline.config.pipeline import Schema
from loopline.core.errors import LooplineError
from loopline.pipeline.schema import MAX_CATEGORIES, infer_column, infer_schema, schema_yaml
from loopline.pipeline.stages import ingest
from loopline.pipeline.stages.validate import check_schema
from loopline.pipeline.tabular import read_table
from tests.helpers import REPO


def sample() -> pd.DataFrame:
    return pd.DataFrame({
        "row_id": ["a", "b", "c", "d"],
        "count": [0, 3, 5, 2],
        "delta": [-1.5, 2.0, 0.25, np.nan],
        "whole_floats": [1.0, 2.0, np.nan, 4.0],
        "colour": ["red", "blue", None, "red"],
        "flag": [True, False, True, True],
        "label": [1, 0, 0, 1],
    })


def test_infer_column_types_and_bounds():
    df = sample()
    assert infer_column(df["count"]) == {"type": "integer", "min": 0, "nullable": False}
    assert infer_column(df["delta"]) == {"type": "float", "nullable": True}  # negative: no min
    assert infer_column(df["whole_floats"]) == {"type": "integer", "min": 0, "nullable": True}
    assert infer_column(df["flag"]) == {"type": "boolean", "nullable": False}


def test_true_false_with_gaps_is_boolean_yes_no_is_a_category():
    import io

    from loopline.pipeline.tabular import normalise_objects

    df = pd.read_csv(io.StringIO("vip,paid,n\nTrue,yes,1\n,no,2\nFALSE,yes,\n"))
    assert df["vip"].dtype == object  # pandas: True, NaN, False
    for col in (df["vip"], normalise_objects(df)["vip"]):  # as init sees it after ingest
        assert infer_column(col) == {"type": "boolean", "nullable": True}
    assert infer_column(df["paid"])["type"] == "category"
    assert infer_column(pd.Series(["true", None, "false"]))["type"] == "category"  # text (Parquet)
    assert infer_column(df["n"])["type"] == "integer"


def test_types_follow_values_and_dtype():
    """Whole floats with gaps are an integer column pandas widened; without gaps they were
    written as floats (5.0) and stay float; integers stay integer."""
    assert infer_column(pd.Series([1.0, 2.0, 4.0], name="x"))["type"] == "float"
    assert infer_column(pd.Series([1.0, None, 4.0], name="x"))["type"] == "integer"
    assert infer_column(pd.Series([1, 2, 4], name="x"))["type"] == "integer"
    assert infer_column(pd.Series(pd.array([1, None, 4], dtype="Int64"), name="x"))["type"] == "integer"
    assert infer_column(pd.Series([1.5, None, 4.0], name="x"))["type"] == "float"


def test_infer_column_categories_sorted_and_nullable():
    rule = infer_column(sample()["colour"])
    assert rule == {"type": "category", "categories": ["blue", "red"], "nullable": True}


def test_infer_column_infinite_is_float():
    assert infer_column(pd.Series([1.0, np.inf, 3.0], name="x"))["type"] == "float"


def test_infer_column_all_missing_numeric():
    rule = infer_column(pd.Series([np.nan, np.nan], name="x"))
    assert rule == {"type": "float", "nullable": True}


def test_too_many_categories_is_text_without_a_list():
    ok = pd.Series([f"v{i}" for i in range(MAX_CATEGORIES)], name="ok")
    assert len(infer_column(ok)["categories"]) == MAX_CATEGORIES
    text = pd.Series([f"v{i}" for i in range(MAX_CATEGORIES + 1)], name="name")
    assert infer_column(text) == {"type": "category", "nullable": False}


def test_infer_schema_target_forced_to_category():
    schema = infer_schema(sample(), "label")
    assert "row_id" not in schema["columns"]
    assert schema["allow_extra_columns"] is False
    assert schema["columns"]["label"] == {"type": "category", "categories": ["0", "1"],
                                          "nullable": False}
    assert list(schema["columns"]) == ["count", "delta", "whole_floats", "colour", "flag", "label"]


def test_infer_schema_text_target_not_nullable_even_with_gaps():
    schema = infer_schema(sample(), "colour")
    assert schema["columns"]["colour"]["type"] == "category"
    assert schema["columns"]["colour"]["nullable"] is False


def test_infer_schema_numeric_target_with_too_many_values():
    df = pd.DataFrame({"y": np.arange(60), "x": np.arange(60)})
    with pytest.raises(LooplineError, match=r"target 'y' has 60 distinct values: a regression"):
        infer_schema(df, "y")
    df = pd.DataFrame({"y": [0.5, 1.5, 2.25, 0.5], "x": [1, 2, 3, 4]})
    with pytest.raises(LooplineError, match=r"target 'y' has 3 distinct values with fractions"):
        infer_schema(df, "y")


def test_infer_schema_unknown_target():
    with pytest.raises(LooplineError, match=r"target 'nope' is not a column .*count"):
        infer_schema(sample(), "nope")


def test_schema_yaml_parses_back_and_validates():
    schema = infer_schema(sample(), "label")
    text = schema_yaml(schema)
    assert text.startswith("schema:\n  allow_extra_columns: false\n  columns:\n")
    assert len(text.splitlines()) == 3 + len(schema["columns"])  # one column per line
    parsed = yaml.safe_load(text)["schema"]
    assert parsed == schema
    model = Schema.model_validate(parsed)
    assert model.columns["label"].categories == ["0", "1"]
    assert model.columns["count"].min == 0


def test_schema_yaml_quotes_yaml_special_words():
    df = pd.DataFrame({"no": ["yes", "no", "on", "null"], "y": ["a", "b", "a", "b"]})
    parsed = yaml.safe_load(schema_yaml(infer_schema(df, "y")))["schema"]
    assert list(parsed["columns"]) == ["no", "y"]
    assert parsed["columns"]["no"]["categories"] == ["no", "null", "on", "yes"]
    Schema.model_validate(parsed)


def test_inferred_schema_accepts_the_data_it_came_from():
    raw = ingest.ingest(read_table(REPO / "data" / "credit_data.csv"), None, None)
    inferred = infer_schema(raw, "Status")
    cols = inferred["columns"]
    assert cols["Status"] == {"type": "category", "categories": ["bad", "good"], "nullable": False}
    # Income is written as 129.0 etc. with gaps: whole numbers, so integer, and nullable
    assert cols["Income"] == {"type": "integer", "min": 0, "nullable": True}
    assert cols["Age"] == {"type": "integer", "min": 0, "nullable": False}
    assert cols["Records"]["categories"] == ["no", "yes"]
    schema = Schema.model_validate(yaml.safe_load(schema_yaml(inferred))["schema"])
    assert check_schema(raw, schema) == []


def test_boolean_and_float_targets_get_the_labels_validate_compares() -> None:
    """Classes are written as validate and prepare read them (true/1), not as Python prints them."""
    import pandas as pd

    from loopline.config.pipeline import DataConfig
    from loopline.pipeline.schema import infer_schema
    from loopline.pipeline.stages.validate import check_target

    for values, want in (([True, False, True], ["false", "true"]), ([1.0, 0.0, 1.0], ["0", "1"])):
        df = pd.DataFrame({"y": values, "x": [1, 2, 3]})
        assert infer_schema(df, "y")["columns"]["y"]["categories"] == want
        cfg = DataConfig.model_validate({
            "name": "d", "source": "d.csv", "target": "y", "positive_class": want[1],
            "schema": {"columns": {"y": {"type": "category", "categories": want},
                                   "x": {"type": "integer"}}}})
        assert check_target(df, cfg) == []


def test_numbers_with_a_placeholder_for_gaps_are_numbers_with_gaps(tmp_path) -> None:
    """``?`` among numbers (UCI's heart disease, horse colic) makes a column of numbers with
    gaps, ``?`` its placeholder; ingest reads it as a gap and validate passes the rest."""
    import io

    df = pd.read_csv(io.StringIO("ca,temp,grade,dash,y\n1.0,38.5,?,a,u\n?,?,-,-,v\n3.0,37.9,n/a,-,u\n"))
    assert infer_column(df["ca"]) == {"type": "integer", "min": 0, "nullable": True,
                                      "missing_values": ["?"]}
    assert infer_column(df["temp"]) == {"type": "float", "min": 0, "nullable": True,
                                        "missing_values": ["?"]}
    # only placeholders and gaps, or mostly a sign: categories, as before
    assert infer_column(df["grade"])["type"] == "category"
    assert infer_column(df["dash"])["type"] == "category"
    assert infer_column(pd.Series(["x1", "?", "x2"]))["type"] == "category"  # codes, not numbers
    assert infer_column(pd.Series(["12", "na", "7.5", "Unknown"]))["missing_values"] == ["Unknown", "na"]
    assert infer_column(pd.Series(["12", "high", "7.5"]))["type"] == "category"  # a word of its own
    assert infer_column(pd.Series(["2021-01-02", "?", "2021-01-03"]))["type"] == "category"
    schema = infer_schema(ingest.ingest(df, None, None), "y")
    rules = Schema.model_validate(yaml.safe_load(schema_yaml(schema))["schema"])
    missing = {n: r.missing_values for n, r in rules.columns.items() if r.missing_values}
    raw = ingest.ingest(df, None, None, missing)
    assert raw["ca"].isna().tolist() == [False, True, False]
    assert check_schema(raw, rules) == []
    assert check_schema(ingest.ingest(df, None, None), rules)[0].rule == "type"  # "?" unread


def test_blank_fields_among_numbers_are_marked_when_a_plain_reader_takes_them_as_text(tmp_path) -> None:
    """A field of spaces among numbers (Telco's TotalCharges) is a gap to loopline's reading
    and text to a plain ``pd.read_csv``: the column is numbers with ``""`` for gaps, so the
    service takes the rows as that reader has them."""
    from loopline.pipeline.schema import infer_file_schema
    from loopline.pipeline.tabular import numbers_a_reader_takes_as_text

    csv = tmp_path / "churn.csv"
    csv.write_text("tenure,total,clean,y\n0, ,1.5,a\n2,59.9,,b\n3,88.1,2.5,a\n", encoding="utf-8")
    df = read_table(csv)
    assert df["total"].dtype == "float64" and df["total"].isna().sum() == 1
    assert numbers_a_reader_takes_as_text(csv, ["total", "clean"]) == {"total"}
    cols = infer_file_schema(df, "y", csv)["columns"]
    assert cols["total"] == {"type": "float", "min": 0, "nullable": True, "missing_values": [""]}
    assert cols["clean"] == {"type": "float", "min": 0, "nullable": True}  # an empty field: NaN to all
    parquet = tmp_path / "churn.parquet"
    df.to_parquet(parquet)
    assert numbers_a_reader_takes_as_text(parquet, ["total"]) == set()


def test_missing_values_are_text_of_a_nullable_column_of_numbers() -> None:
    from loopline.config.pipeline import ColumnRule

    assert ColumnRule(type="float", missing_values=[" ? ", "?", ""]).missing_values == ["", "?"]
    for bad, word in (({"type": "category", "missing_values": ["?"]}, "integer and float"),
                      ({"type": "integer", "nullable": False, "missing_values": ["?"]}, "nullable"),
                      ({"type": "integer", "missing_values": ["-1"]}, "a number")):
        with pytest.raises(ValueError, match=word):
            ColumnRule(**bad)
