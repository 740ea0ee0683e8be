"""The monitor's actions (monitoring/actions.py): when to retrain, and on which records."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from loopline.config.pipeline import Schema

NO_PLACEHOLDERS = Schema(columns={"y": {"type": "category"}})


def test_a_red_error_rate_does_not_stop_the_retraining_an_amber_model_needs(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from loopline.monitoring.actions import retrain

    params = SimpleNamespace(monitor=SimpleNamespace(min_labels=50),
                             data=SimpleNamespace(id_column="id", order_column=None))
    window = {"status": "RED", "grades": {"roc_auc": "AMBER", "error_rate": "RED"}}
    out = retrain(tmp_path, params, window, pd.DataFrame(), "prod", service_url=None, push=None,
                  audit_path=tmp_path / "audit.jsonl")
    assert out and out[0]["action"] == "retrain"  # past the status check, to the data's rule
    assert out[0]["why"].startswith("data.id_column/order_column set")
    window = {"status": "RED", "grades": {"roc_auc": "RED", "error_rate": "AMBER"}}
    assert retrain(tmp_path, params, window, pd.DataFrame(), "prod", service_url=None, push=None,
                   audit_path=tmp_path / "audit.jsonl") == []  # RED model: rollback's business


def test_an_amber_error_rate_alone_does_not_retrain(tmp_path: Path) -> None:
    from loopline.monitoring.actions import retrain

    window = {"status": "AMBER", "grades": {"roc_auc": "GREEN", "error_rate": "AMBER"}}
    out = retrain(tmp_path, None, window, pd.DataFrame(), "prod", service_url=None, push=None,
                  audit_path=tmp_path / "audit.jsonl")
    assert out == [{"action": "retrain", "done": False,
                    "why": "the window is AMBER for its error rate only: the service's failures, "
                           "which a new model would not mend"}]


def test_retraining_appends_only_records_the_data_lacks(tmp_path: Path) -> None:
    from loopline.monitoring.actions import _new_rows

    (tmp_path / "data").mkdir()
    pd.DataFrame({"y": ["bad", "good"], "a": [1.0, 2.0], "k": ["x", "y"]}).to_csv(
        tmp_path / "data/d.csv", index=False)

    class P:  # the parts of params the function reads
        class data:  # noqa: N801
            source, format, target, schema_ = "data/d.csv", "auto", "y", NO_PLACEHOLDERS

    labelled = pd.DataFrame({"ts": [10.0, 11.0, 12.0, 13.0],
                             "inputs": [{"a": 1, "k": "x"}, {"a": 3.0, "k": "z"},
                                        {"a": 4.0, "k": "x"}, {"a": 2.0, "k": "y"}],
                             "label": ["bad", "good", "bad", "bad"]})
    rows, old, parquet = _new_rows(tmp_path, P, labelled, through=10.5)
    assert not parquet and len(old) == 2
    # 10.0 is older than a previous retrain; the row at 13.0 differs from (2.0, y, good) by label
    assert rows[["a", "k", "y"]].values.tolist() == [[3.0, "z", "good"], [4.0, "x", "bad"],
                                                     [2.0, "y", "bad"]]
    assert rows["_ts"].tolist() == [11.0, 12.0, 13.0]
    rows2, _, _ = _new_rows(tmp_path, P, labelled.assign(inputs=[{"a": 2, "k": "y"}] * 4,
                                                         label="good"), through=0.0)
    assert rows2.empty  # (2, y, good) is in the data already: 2 and 2.0 are the same value


def test_retraining_reads_the_data_as_it_is_written_delimiter_and_encoding(tmp_path: Path) -> None:
    from loopline.monitoring.actions import _new_rows

    (tmp_path / "data").mkdir()
    (tmp_path / "data/d.csv").write_bytes("y;a;k\nbad;1.5;Málaga\ngood;2.0;y\n".encode("cp1252"))

    class P:
        class data:  # noqa: N801
            source, format, target, schema_ = "data/d.csv", "auto", "y", NO_PLACEHOLDERS

    labelled = pd.DataFrame({"ts": [11.0, 12.0], "inputs": [{"a": 1.5, "k": "Málaga"},
                                                              {"a": 3.0, "k": "Zürich"}],
                             "label": ["bad", "good"]})
    rows, old, _ = _new_rows(tmp_path, P, labelled, through=0.0)
    assert list(old.columns) == ["y", "a", "k"] and old["k"].iloc[0] == "Málaga"
    assert rows[["y", "a", "k"]].values.tolist() == [["good", 3.0, "Zürich"]]


def test_retraining_knows_the_rows_the_data_has_as_ingest_reads_them(tmp_path: Path) -> None:
    """A file written with ", ", "?" and " " for gaps among numbers: the service logged its
    rows as ingest reads them ("Private", null, 29.85), which are not new data; a Parquet
    file's text column of numbers takes the new rows' numbers as text."""
    from loopline.monitoring.actions import _new_rows

    (tmp_path / "data").mkdir()
    (tmp_path / "data/d.csv").write_text(
        "y, work, ca, total\nbad, Private, ?, 29.85\ngood, State, 3.0, \n", encoding="utf-8")
    schema = Schema(columns={"y": {"type": "category"}, "work": {"type": "category"},
                             "ca": {"type": "integer", "missing_values": ["?"]},
                             "total": {"type": "float", "missing_values": [""]}})

    class P:
        class data:  # noqa: N801
            source, format, target, schema_ = "data/d.csv", "auto", "y", schema

    labelled = pd.DataFrame({"ts": [1.0, 2.0, 3.0],
                             "inputs": [{"work": "Private", "ca": None, "total": 29.85},
                                        {"work": "State", "ca": 3.0, "total": None},
                                        {"work": "State", "ca": 1.0, "total": 5.0}],
                             "label": ["bad", "good", "good"]})
    rows, _, _ = _new_rows(tmp_path, P, labelled, through=0.0)
    assert rows[["work", "ca", "total"]].values.tolist() == [["State", "1", 5.0]]
    assert rows["_ts"].tolist() == [3.0]

    pd.DataFrame({"y": ["bad", "good"], "work": ["Private", "State"], "ca": ["?", "3.0"],
                  "total": [29.85, None]}).to_parquet(tmp_path / "data/d.parquet")
    P.data.source = "data/d.parquet"
    rows, old, parquet = _new_rows(tmp_path, P, labelled, through=0.0)
    assert parquet and rows["_ts"].tolist() == [3.0] and rows["ca"].tolist() == ["1"]
    pd.concat([old, rows.drop(columns="_ts")]).to_parquet(tmp_path / "both.parquet")  # one type


def test_retraining_writes_logged_rows_as_the_data_holds_its_columns(tmp_path: Path) -> None:
    """The service logs a boolean as 1.0 and labels as text: a row the data has (True, 0/1
    target) is known, and new rows keep each Parquet column's type (True/False, 0/1)."""
    from loopline.monitoring.actions import _new_rows

    (tmp_path / "data").mkdir()
    schema = Schema(columns={"y": {"type": "category", "categories": ["0", "1"]},
                             "f": {"type": "boolean"}, "x": {"type": "float"}})
    old = pd.DataFrame({"y": [0, 1], "f": [True, False], "x": [1.5, 2.5]})
    old.to_parquet(tmp_path / "data/d.parquet")

    class P:
        class data:  # noqa: N801
            source, format, target, schema_ = "data/d.parquet", "auto", "y", schema

    labelled = pd.DataFrame({"ts": [1.0, 2.0, 3.0],
                             "inputs": [{"f": 1.0, "x": 1.5}, {"f": 0.0, "x": 2.5}, {"f": 1.0, "x": 9.0}],
                             "label": ["0", "1", "1"]})
    rows, old_read, parquet = _new_rows(tmp_path, P, labelled, through=0.0)
    assert parquet and rows["_ts"].tolist() == [3.0]  # the first two are the data's rows
    both = pd.concat([old_read, rows.drop(columns="_ts")], ignore_index=True)
    both.to_parquet(tmp_path / "both.parquet")  # one type per column
    assert both.dtypes.to_dict() == old.dtypes.to_dict() and both["f"].tolist() == [True, False, True]

    old.to_csv(tmp_path / "data/d.csv", index=False)  # True/False text in a CSV: known too
    P.data.source = "data/d.csv"
    rows, _, _ = _new_rows(tmp_path, P, labelled, through=0.0)
    assert rows["_ts"].tolist() == [3.0] and rows["f"].tolist() == [True]
