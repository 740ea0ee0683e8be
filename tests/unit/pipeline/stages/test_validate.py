"""Unit tests of the validate stage: every schema rule, target checks and missing-rate alarms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import yaml

from loopline.config.compose import compose
from loopline.config.params import validate_params
from loopline.config.pipeline import DataConfig, Schema
from loopline.pipeline.stages import ingest
from loopline.pipeline.stages.validate import (
    Violation,
    check_column,
    check_schema,
    check_target,
    missing_report,
    validate,
)
from loopline.pipeline.tabular import read_table
from tests.helpers import REPO


def schema(**columns) -> Schema:
    return Schema.model_validate({"columns": columns})


def frame(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame({"row_id": [f"r{i}" for i in range(n)], **columns})


def data_config(cols: dict, **kw) -> DataConfig:
    base = {"name": "t", "source": "x.csv", "target": "y", "positive_class": "bad",
            "schema": {"columns": cols}}
    base.update(kw)
    return DataConfig.model_validate(base)


def only(violations: list[Violation], rule: str) -> Violation:
    hits = [v for v in violations if v.rule == rule]
    assert len(hits) == 1, violations
    return hits[0]


# ---------------------------------------------------------------- columns


def test_required_column_missing():
    s = schema(a={"type": "integer"}, b={"type": "float"})
    v = only(check_schema(frame(a=[1, 2]), s), "required")
    assert v.column == "b"
    assert "absent from the data" in v.message


def test_unexpected_column():
    s = schema(a={"type": "integer"})
    df = frame(a=[1, 2], extra=["x", "y"])
    v = only(check_schema(df, s), "unexpected")
    assert v.column == "extra"
    # row_id is never unexpected, and extras are fine when allowed
    allowed = Schema.model_validate({"columns": {"a": {"type": "integer"}},
                                     "allow_extra_columns": True})
    assert check_schema(df, allowed) == []


def test_clean_frame_has_no_violations():
    s = schema(a={"type": "integer", "nullable": False, "min": 0, "max": 10},
               b={"type": "float", "min": 0},
               c={"type": "category", "categories": ["x", "y"]},
               d={"type": "boolean"})
    df = frame(a=[0, 5, 10], b=[0.5, np.nan, 3.0], c=["x", None, "y"], d=["yes", "False", None])
    assert check_schema(df, s) == []


# ------------------------------------------------------------------ types


def test_type_not_numbers_reports_rows_and_values():
    s = schema(age={"type": "integer"})
    df = frame(age=["30", "forty", "41", "n/a", None])
    v = only(check_schema(df, s), "type")
    assert v.column == "age"
    assert v.count == 2
    assert "not numbers" in v.message
    assert v.examples == [{"row_id": "r1", "value": "forty"}, {"row_id": "r3", "value": "n/a"}]
    assert "row_id r1='forty'" in v.line()


def test_integer_rejects_fractions():
    s = schema(n={"type": "integer"})
    v = only(check_schema(frame(n=[1.0, 2.5, 3.0, -0.25]), s), "type")
    assert v.count == 2
    assert "not whole numbers" in v.message
    assert [e["row_id"] for e in v.examples] == ["r1", "r3"]
    assert v.examples[0]["value"] == 2.5
    # a float column accepts the same values
    assert check_schema(frame(n=[1.0, 2.5, 3.0, -0.25]), schema(n={"type": "float"})) == []


def test_infinite_values():
    s = schema(x={"type": "float"})
    v = only(check_schema(frame(x=[1.0, np.inf, 2.0]), s), "type")
    assert "infinite" in v.message and v.examples[0]["row_id"] == "r1"


def test_boolean_type():
    s = schema(flag={"type": "boolean"})
    v = only(check_schema(frame(flag=["yes", "maybe", "0", " TRUE "]), s), "type")
    assert v.count == 1
    assert v.examples == [{"row_id": "r1", "value": "maybe"}]


def test_word_yes_in_integer_text_column_is_not_a_number():
    s = schema(n={"type": "integer"})
    v = only(check_schema(frame(n=["5", "yes", "7"]), s), "type")
    assert v.examples == [{"row_id": "r1", "value": "yes"}]


# ------------------------------------------------------------ nullable, ranges


def test_nullable_false():
    s = schema(x={"type": "float", "nullable": False})
    v = only(check_schema(frame(x=[1.0, np.nan, 2.0, np.nan]), s), "nullable")
    assert v.count == 2
    assert v.examples == [{"row_id": "r1", "value": None}, {"row_id": "r3", "value": None}]
    # nullable: true (the default) allows them
    assert check_schema(frame(x=[1.0, np.nan]), schema(x={"type": "float"})) == []


def test_min_and_max():
    s = schema(age={"type": "integer", "min": 18, "max": 100})
    found = check_schema(frame(age=[17, 18, 100, 101, 250, np.nan]), s)
    low, high = only(found, "min"), only(found, "max")
    assert low.count == 1 and low.examples == [{"row_id": "r0", "value": 17.0}]
    assert "below the minimum 18" in low.message
    assert high.count == 2 and [e["row_id"] for e in high.examples] == ["r3", "r4"]
    assert "above the maximum 100" in high.message


def test_min_on_text_numbers():
    s = schema(x={"type": "float", "min": 0})
    v = only(check_schema(frame(x=["1.5", "-2", "3"]), s), "min")
    assert v.examples == [{"row_id": "r1", "value": "-2"}]


def test_examples_limited_to_show_rows():
    s = schema(x={"type": "integer", "max": 0})
    v = check_column(frame(x=list(range(1, 21))), "x", s.columns["x"], 3)[0]
    assert v.count == 20
    assert [e["row_id"] for e in v.examples] == ["r0", "r1", "r2"]


def test_categories():
    s = schema(home={"type": "category", "categories": ["own", "rent"]})
    v = only(check_schema(frame(home=["own", "boat", None, "rent", "Own"]), s), "categories")
    assert v.count == 2
    assert [e["value"] for e in v.examples] == ["boat", "Own"]
    assert [e["row_id"] for e in v.examples] == ["r1", "r4"]
    assert "['own', 'rent']" in v.message


def test_categories_for_numeric_codes():
    s = schema(code={"type": "category", "categories": ["1", "2"]})
    assert check_schema(frame(code=[1, 2, 2]), s) == []
    v = only(check_schema(frame(code=[1, 3, 2]), s), "categories")
    assert v.examples == [{"row_id": "r1", "value": 3}]


def test_categories_for_numeric_codes_with_a_gap():
    s = schema(code={"type": "category", "categories": ["1", "2"]})
    assert check_schema(frame(code=[1.0, 2.0, np.nan]), s) == []


def test_several_rules_in_one_column():
    s = schema(x={"type": "integer", "nullable": False, "min": 0})
    rules = sorted(v.rule for v in check_schema(frame(x=["a", None, "-1", "2.5"]), s))
    assert rules == ["min", "nullable", "type", "type"]


# ------------------------------------------------------------------- target


TARGET_COLS = {"y": {"type": "category", "categories": ["bad", "good"]}, "x": {"type": "float"}}


def test_target_needs_two_classes():
    cfg = data_config(TARGET_COLS)
    v = only(check_target(frame(y=["good", "good", None], x=[1, 2, 3]), cfg), "classes")
    assert v.column == "y"
    assert "['good']" in v.message


def test_target_positive_class_must_occur():
    cfg = data_config({"y": {"type": "category"}, "x": {"type": "float"}})
    v = only(check_target(frame(y=["good", "ok", "good"], x=[1, 2, 3]), cfg), "positive_class")
    assert "'bad' never occurs" in v.message
    assert check_target(frame(y=["good", "bad"], x=[1, 2]), cfg) == []


def test_target_absent_reported_only_as_required():
    cfg = data_config(TARGET_COLS)
    report = validate(frame(x=[1.0, 2.0]), cfg, ["x"])
    assert [(v["column"], v["rule"]) for v in report["violations"]] == [("y", "required")]
    assert report["passed"] is False


# ------------------------------------------------------------------ missing


def test_missing_report_rates_and_alarms():
    df = frame(a=[1, np.nan, np.nan, 4], b=[1, 2, 3, np.nan], c=[1, 2, 3, 4])
    rates, alarms = missing_report(df, ["a", "b", "c", "not_there"], 0.25)
    assert rates == {"a": 0.5, "b": 0.25, "c": 0.0}
    assert [a["column"] for a in alarms] == ["a"]  # b is at, not above, the threshold
    assert alarms[0]["missing_rate"] == 0.5
    assert "50.0% missing" in alarms[0]["message"]


def test_validate_alarm_fails_only_when_configured():
    df = frame(y=["bad", "good", "good", "bad"], x=[np.nan, np.nan, np.nan, 1.0])
    soft = validate(df, data_config(TARGET_COLS), ["x"])
    assert soft["passed"] is True
    assert [a["column"] for a in soft["alarms"]] == ["x"]
    strict = validate(df, data_config(TARGET_COLS, validate={"fail_on_missing_alarm": True}), ["x"])
    assert strict["passed"] is False
    assert strict["violations"] == []


def test_validate_report_shape():
    df = frame(y=["bad", "good", "zzz"], x=[1.0, 2.0, 3.0])
    report = validate(df, data_config(TARGET_COLS), ["x"])
    assert report["passed"] is False
    assert report["rows"] == 3 and report["columns"] == 2
    v = report["violations"][0]
    assert (v["column"], v["rule"], v["count"]) == ("y", "categories", 1)
    assert v["examples"] == [{"row_id": "r2", "value": "zzz"}]


# ---------------------------------------------------------------- real data


def test_real_credit_data_passes_its_schema():
    params = validate_params(yaml.safe_load(compose(REPO)))
    raw = ingest.ingest(read_table(REPO / params.data.source), params.data.id_column,
                        params.data.order_column)
    numeric, categorical = params.data.feature_columns(params.features.drop)
    report = validate(raw, params.data, numeric + categorical)
    assert report["violations"] == []
    assert report["passed"] is True
    assert report["rows"] == 4454
    assert report["columns"] == 14
    assert report["alarms"] == []
    # the documented real gaps are seen
    assert report["missing_rate"]["Income"] > 0
    assert report["missing_rate"]["Age"] == 0


def test_real_credit_data_with_corruption_fails():
    params = validate_params(yaml.safe_load(compose(REPO)))
    df = read_table(REPO / params.data.source)
    df["Age"] = df["Age"].astype(object)
    df.loc[3, "Age"] = "old"
    df.loc[5, "Home"] = "castle"
    raw = ingest.ingest(df, None, None)
    report = validate(raw, params.data, [])
    got = {(v["column"], v["rule"]) for v in report["violations"]}
    assert got == {("Age", "type"), ("Home", "categories")}
    home = next(v for v in report["violations"] if v["column"] == "Home")
    assert home["examples"][0]["value"] == "castle"
    assert home["examples"][0]["row_id"] == raw.loc[raw["Home"] == "castle", "row_id"].item()
