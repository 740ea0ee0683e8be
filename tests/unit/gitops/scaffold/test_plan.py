"""`loopline init` decides before it writes (gitops/scaffold/plan.py): names, the positive
class, and refusals that name the problem and create nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopline.core.errors import LooplineError
from loopline.core.names import NAME_RE
from loopline.gitops.scaffold import plan
from tests.helpers.churn import churn_frame
from tests.helpers.commands import loopline


@pytest.mark.parametrize(("dirname", "artifact"), [
    ("My Project", "my-project"), ("churn_2024", "churn-2024"), ("x", "x"),
    ("123", "model"), ("9Lives", "lives"), ("credit-risk", "credit-risk")])
def test_default_artifact_name(tmp_path: Path, dirname: str, artifact: str) -> None:
    assert plan.artifact_name(tmp_path / dirname) == artifact


@given(st.text())
def test_a_slug_follows_the_name_rule(text: str) -> None:
    s = plan.slug(text)
    assert s == "" or NAME_RE.match(s)


def test_positive_class_defaults_to_the_minority() -> None:
    assert plan.positive_class({"no": 7, "yes": 3}, "y", None) == "yes"
    assert plan.positive_class({"b": 5, "a": 5}, "y", None) == "a"  # ties: by name
    assert plan.positive_class({"no": 7, "yes": 3}, "y", "no") == "no"
    # a true/false or 1/0 target: true and 1 are positive, whichever is rarer
    assert plan.positive_class({"true": 7, "false": 3}, "y", None) == "true"
    assert plan.positive_class({"0": 2, "1": 9}, "y", None) == "1"
    assert plan.positive_class({"0": 2, "1": 9}, "y", "0") == "0"


# ----------------------------------------------------------------------------- refusals


def _refused(tmp_path: Path, *args: str) -> str:
    res = loopline("init", *args, cwd=tmp_path, check=False)
    assert res.returncode == 1, res.stdout
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    return res.stderr


def test_refuses_a_non_empty_directory(tmp_path: Path, churn_csv: Path) -> None:
    (tmp_path / "inst").mkdir()
    (tmp_path / "inst" / "notes.txt").write_text("mine\n")
    err = _refused(tmp_path, "inst", "--data", str(churn_csv), "--target", "churn")
    assert "inst is not empty" in err
    assert [p.name for p in (tmp_path / "inst").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(("args", "message"), [
    (["--data", "missing.csv", "--target", "churn"], "data file not found: missing.csv"),
    (["--data", "{csv}", "--target", "nope"], "target 'nope' is not a column of the data"),
    (["--data", "{csv}", "--target", "churn", "--positive-class", "maybe"],
     "positive class 'maybe' is not a value of target 'churn' (values: no, yes)"),
    (["--data", "{csv}", "--target", "churn", "--name", "Bad_Name"],
     "--name 'Bad_Name' is not a valid artifact name"),
])
def test_refusals_name_the_problem_and_create_nothing(tmp_path: Path, churn_csv: Path,
                                                      args: list[str], message: str) -> None:
    args = [a.replace("{csv}", str(churn_csv)) for a in args]
    err = _refused(tmp_path, "new/inst", *args)
    assert message in err
    assert not (tmp_path / "new").exists()


def test_refuses_a_target_with_one_class_and_counts_rows_without_a_label(tmp_path: Path) -> None:
    df = churn_frame(100)
    df.assign(churn="no").to_csv(tmp_path / "one.csv", index=False)
    assert "target 'churn' has only one class ('no')" in _refused(
        tmp_path, "a", "--data", "one.csv", "--target", "churn")
    df.assign(churn=None).to_csv(tmp_path / "none.csv", index=False)
    assert "target 'churn' is empty in every row" in _refused(
        tmp_path, "b", "--data", "none.csv", "--target", "churn")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    df.loc[[3, 5], "churn"] = None
    df.to_csv(tmp_path / "gaps.csv", index=False)
    p = plan.make_plan(tmp_path / "c", tmp_path / "gaps.csv", "churn")
    assert p.unlabelled == 2 and sum(p.classes.values()) == 98
    out = loopline("init", "c", "--data", "gaps.csv", "--target", "churn", cwd=tmp_path).stdout
    assert "2 rows without a label are left out of training (ingest), kept in the file" in out


def test_a_target_of_whole_floats_has_the_integer_classes(tmp_path: Path) -> None:
    """1.0/0.0, as a writer left a 0/1 column that once had gaps: the classes 1 and 0."""
    df = churn_frame(100)
    df.assign(churn=(df["churn"] == "yes").astype(float)).to_parquet(tmp_path / "float.parquet")
    p = plan.make_plan(tmp_path / "a", tmp_path / "float.parquet", "churn")
    assert sorted(p.classes) == ["0", "1"] and p.positive_class == "1"
    assert p.schema["columns"]["churn"]["categories"] == ["0", "1"]


def test_a_true_false_target_has_the_classes_true_and_false(tmp_path: Path) -> None:
    df = churn_frame(100)
    df.assign(churn=df["churn"] == "yes").to_parquet(tmp_path / "bool.parquet")
    df = plan.read_data(tmp_path / "bool.parquet")
    classes = plan.target_classes(df, "churn")
    assert set(classes) == {"true", "false"} and sum(classes.values()) == 100
    assert min(classes.values()) > 0 and plan.positive_class(classes, "churn", None) == "true"


# ------------------------------------------------------------------------------ columns


def _roles(df, target: str, **kw) -> dict[str, tuple[str, str]]:
    from loopline.pipeline.schema import infer_schema

    cols = plan.column_roles(df, target, infer_schema(df, target), **kw)
    return {c.name: (c.role, c.note) for c in cols}


def test_init_understands_ids_dates_text_and_constants() -> None:
    from tests.helpers import synthetic

    roles = _roles(*synthetic.with_id_column())
    assert roles["Unnamed: 0"][0] == plan.ID and roles["customer_id"] == (plan.DROPPED,
                                                                            "another unique identifier")
    assert {r for c, (r, _) in roles.items() if c.startswith("f")} == {plan.FEATURE}
    roles = _roles(*synthetic.multiclass_with_date())
    assert roles["signup_date"][0] == plan.ORDER and roles["kind"][0] == plan.TARGET
    roles = _roles(*synthetic.free_text())
    assert roles["job title"][0] == roles["comment"][0] == plan.DROPPED
    assert roles["job title"][1].startswith("free text (")
    assert roles["source"] == (plan.DROPPED, "constant ('web')")
    assert roles["income"][0] == roles["age"][0] == plan.FEATURE  # unique-ish numbers stay features
    roles = _roles(*synthetic.odd_names())
    assert {r for c, (r, _) in roles.items() if c != "label?"} == {plan.FEATURE}


def test_overrides_win_and_are_checked() -> None:
    from tests.helpers import synthetic

    df, target = synthetic.multiclass_with_date()
    roles = _roles(df, target, drop=("group",), time_column="signup_date")
    assert roles["group"] == (plan.DROPPED, "--drop") and roles["signup_date"][0] == plan.ORDER
    df, target = synthetic.with_id_column()
    roles = _roles(df, target, id_column="customer_id")
    assert roles["customer_id"][0] == plan.ID and roles["Unnamed: 0"][0] == plan.DROPPED
    for kw, message in (({"drop": ("nope",)}, "--drop 'nope' is not a column"),
                        ({"time_column": "churned"}, "is the target")):
        with pytest.raises(LooplineError, match=message):
            _roles(df, target, **kw)
    df2, t2 = synthetic.free_text()
    with pytest.raises(LooplineError, match="--id 'source' is not a unique identifier"):
        _roles(df2, t2, id_column="source")
    with pytest.raises(LooplineError, match="--time 'comment' holds values that are neither"):
        _roles(df2, t2, time_column="comment")


def test_positive_class_only_for_two_classes() -> None:
    five = {c: 10 for c in "abcde"}
    assert plan.positive_class(five, "y", None) is None
    with pytest.raises(LooplineError, match="--positive-class applies to a target with two classes"):
        plan.positive_class(five, "y", "a")


def test_init_prints_its_decision_per_column_and_refuses_regression(tmp_path: Path) -> None:
    import json

    from tests.helpers import synthetic

    df, target = synthetic.free_text(200)
    df.to_csv(tmp_path / "d.csv", index=False)
    doc = json.loads(loopline("init", "inst", "--data", "d.csv", "--target", target, "--drop", "age",
                              "--json", cwd=tmp_path).stdout)
    by = {d["column"]: d for d in doc["decisions"]}
    assert by["age"]["role"] == plan.DROPPED and by["income"]["role"] == plan.FEATURE
    assert doc["drop"] == ["job title", "comment", "age", "source"]
    assert "drop:" in (tmp_path / "inst" / "conf" / "features" / "d.yaml").read_text()
    params = (tmp_path / "inst" / "params.yaml").read_text()
    assert "- job title" in params and "- age" in params
    df, target = synthetic.regression()
    df.to_csv(tmp_path / "r.csv", index=False)
    assert "a regression target" in _refused(tmp_path, "r", "--data", "r.csv", "--target", target)


def test_a_row_id_column_of_the_data_is_its_id(tmp_path: Path) -> None:
    """``row_id`` is the name loopline keeps row ids under: the data's own is taken as the id."""
    df = churn_frame(60)
    df.insert(0, "row_id", range(500, 560))
    df.to_csv(tmp_path / "d.csv", index=False)
    p = plan.make_plan(tmp_path / "a", tmp_path / "d.csv", "churn")
    assert p.id_column == "row_id" and "row_id" not in p.schema["columns"]
    assert "row_id" not in [c.name for c in p.columns if c.role == plan.FEATURE]
    with pytest.raises(LooplineError, match=r"--id 'tenure': the data's column 'row_id' is its id"):
        plan.make_plan(tmp_path / "b", tmp_path / "d.csv", "churn", id_column="tenure")
    df.assign(row_id=[1, 1] + list(range(58))).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(LooplineError, match=r"column 'row_id' has repeated or empty values: .* rename"):
        plan.make_plan(tmp_path / "c", tmp_path / "dup.csv", "churn")


def test_init_says_how_it_read_a_file_that_is_not_utf8_with_commas(tmp_path: Path) -> None:
    df = churn_frame(60)
    df.to_csv(tmp_path / "plain.csv", index=False)
    df.to_csv(tmp_path / "semi.csv", index=False, sep=";", encoding="cp1252")
    df.assign(plan=df["plan"] + "é").to_csv(tmp_path / "win.csv", index=False, sep=";",
                                            encoding="cp1252")
    df.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    assert plan.reading(tmp_path / "plain.csv") == plan.reading(tmp_path / "t.tsv") == ()
    assert plan.reading(tmp_path / "semi.csv") == ("fields split by ';'",)  # ASCII: UTF-8 too
    assert plan.reading(tmp_path / "win.csv") == ("fields split by ';'", "cp1252 text, not UTF-8")
    out = loopline("init", "inst", "--data", "win.csv", "--target", "churn", cwd=tmp_path).stdout
    assert "60 rows, " in out and "(fields split by ';'; cp1252 text, not UTF-8)" in out


def test_numbers_with_gaps_marked_by_text_are_features_and_the_example_has_numbers(tmp_path: Path) -> None:
    """"?" and " " among numbers: features with a note, and README's example row sends
    numbers (the first row without gaps), never the placeholder."""
    df = churn_frame(60)
    df["score"] = ["?"] + [f"{v % 7 + 1:.1f}" for v in range(59)]
    df["total"] = [" "] + [f"{(v % 13 + 1) * 1.5:.2f}" for v in range(59)]
    df.to_csv(tmp_path / "d.csv", index=False)
    p = plan.make_plan(tmp_path / "a", tmp_path / "d.csv", "churn")
    notes = {c.name: (c.role, c.note) for c in p.columns}
    assert notes["score"] == (plan.FEATURE, "numbers, '?' for gaps")
    assert notes["total"] == (plan.FEATURE, "numbers, blank text for gaps")
    assert p.schema["columns"]["score"]["missing_values"] == ["?"]
    assert p.example["score"] == 1 and p.example["total"] == 1.5
    # distinct numbers and one "?": text without spaces, but numbers, not an id
    df.assign(score=["?"] + [f"{v * 1.37:.2f}" for v in range(59)]).to_csv(tmp_path / "u.csv", index=False)
    roles = {c.name: c.role for c in plan.make_plan(tmp_path / "b", tmp_path / "u.csv", "churn").columns}
    assert roles["score"] == plan.FEATURE


@pytest.mark.parametrize(("rows", "leaves", "fold"), [(60, (2, 3, 5), 38), (101, (3, 5, 10), 64),
                                                      (150, (5, 10, 20), 96), (20, (1, 2, 3), 12),
                                                      (8, (1,), 4)])
def test_few_rows_get_leaves_the_search_can_split(rows: int, leaves: tuple, fold: int) -> None:
    """A leaf of 20 rows let a model of 60 rows split nothing: it predicted the prior."""
    m = plan.model_for_size(rows)
    assert m is not None and m.base == "hgb" and m.leaves == leaves
    assert f"folds fits on {fold} of the {rows} rows" in m.note
    assert plan.model_for_size(250) is None  # folds of 160 rows: the default's 20 and 40 fit


def test_init_writes_a_model_option_for_few_rows_and_options_never_shadow_loopline_s(
        tmp_path: Path) -> None:
    """A data file named default.csv made conf/features/default.yaml include itself."""
    import json

    import numpy as np
    import pandas as pd
    import yaml

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 60)
    pd.DataFrame({"x": x, "note": [f"text {i} of its own" for i in range(60)],
                  "y": np.where(x > 0, "up", "down")}).to_csv(tmp_path / "default.csv", index=False)
    doc = json.loads(loopline("init", "inst", "--data", "default.csv", "--target", "y", "--json",
                              cwd=tmp_path).stdout)
    repo = tmp_path / "inst"
    assert doc["model"] == {"base": "hgb", "min_samples_leaf": [2, 3, 5],
                            "config": "conf/model/default.yaml",
                            "note": "each of the search's 5 folds fits on 38 of the 60 rows, "
                                    "too few for leaves of 20, 40"}
    config = yaml.safe_load((repo / "conf" / "config.yaml").read_text())
    assert {"features": "default-features"} in config["defaults"]
    assert {"model": "default"} in config["defaults"]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["features"]["drop"] == ["note"] and params["model"]["name"] == "hgb"
    assert params["model"]["search_space"]["min_samples_leaf"] == [2, 3, 5]
    assert params["model"]["search_space"]["max_leaf_nodes"] == [7, 15, 31]  # the rest: hgb's
    assert "`conf/model/default.yaml` (written by init)" in (repo / "README.md").read_text()


def test_data_with_nothing_but_free_text_is_refused_naming_each_column(tmp_path: Path) -> None:
    import pandas as pd

    texts = [f"message number {i} says something of its own" for i in range(120)]
    pd.DataFrame({"label": ["spam", "ham"] * 60, "text": texts, "n": range(120)}).to_csv(
        tmp_path / "sms.csv", index=False)
    err = _refused(tmp_path, "sms", "--data", "sms.csv", "--target", "label")
    assert "no column is left to learn from ('text': left out, free text (120 distinct values" in err
    assert "'n': id, unique identifier" in err and "not from free text or ids" in err
