"""``loopline log`` (monitoring/query.py): the flat records table and its filters, on a real
inference log written by the service's own writer."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from loopline.core.errors import LooplineError
from loopline.monitoring.query import Query, parse_time, run
from loopline.serving.inference_log import InferenceLog

NOW = 1_800_000_000.0
HOUR = 3600.0


@pytest.fixture()
def log(tmp_path: Path) -> Path:
    """Three requests of odd-named columns, two versions, a day apart; two labels."""
    path = tmp_path / "inference.sqlite"
    w = InferenceLog(path, flush_interval=0.01)
    rows = [
        ("a", NOW - 30 * HOUR, "v1", [{"Home": "rent", "ratio/total": 0.5, "label": "x"},
                                      {"Home": "own", "ratio/total": 1.5, "label": "y"}],
         ["good", "bad"]),
        ("b", NOW - 2 * HOUR, "v2", [{"Home": "rent", "ratio/total": 2.0, "label": "z"}],
         ["good"]),
        ("c", NOW - 1 * HOUR, "v2", [{"Home": "rent", "ratio/total": None, "label": "w"}],
         ["bad"]),
    ]
    for rid, ts, version, records, preds in rows:
        proba = np.array([[0.3, 0.7] if p == "good" else [0.9, 0.1] for p in preds])
        w.predictions(rid, ts, version, records, np.array(preds, dtype=object), proba,
                      ["bad", "good"], 1.25)
    w.feedback([("a", 0, "bad"), ("b", 0, "good")], NOW)
    w.close()
    return path


def test_the_records_table_keeps_the_callers_names(log: Path) -> None:
    df = run(log, Query(), now=NOW)
    assert list(df.columns[:9]) == ["time", "request_id", "idx", "version", "prediction",
                                    "label", "correct", "confidence", "latency_ms"]
    assert {"Home", "ratio/total", "input.label"} <= set(df.columns)  # 'label' is a META name
    assert len(df) == 4 and list(df["request_id"]) == ["a", "a", "b", "c"]
    assert df["confidence"].round(2).tolist() == [0.7, 0.9, 0.7, 0.9]


def test_names_apart_only_by_case_get_columns_of_their_own(tmp_path: Path) -> None:
    """DuckDB's names ignore case: ``age`` beside ``Age`` is ``age_2``, and ``Label`` (a
    record column's name but for case) is ``input.Label``; each filters its own values."""
    path = tmp_path / "case.sqlite"
    w = InferenceLog(path, flush_interval=0.01)
    w.predictions("a", NOW - HOUR, "v1", [{"Age": 1, "age": 50, "Label": "p"},
                                          {"Age": 60, "age": 2, "Label": "q"}],
                  np.array(["good", "bad"], dtype=object), np.array([[0.3, 0.7], [0.9, 0.1]]),
                  ["bad", "good"], 1.0)
    w.close()
    df = run(path, Query(), now=NOW)
    assert list(df.columns[9:]) == ["Age", "age_2", "input.Label"]
    assert df.attrs["renamed"] == {"age_2": "age", "input.Label": "Label"}
    assert df["Age"].tolist() == [1, 60] and df["age_2"].tolist() == [50, 2]
    assert run(path, Query(where="age_2 > 10"), now=NOW)["idx"].tolist() == [0]
    assert run(path, Query(where="Age > 10"), now=NOW)["idx"].tolist() == [1]


def test_wrong_is_labelled_and_not_correct(log: Path) -> None:
    df = run(log, Query(wrong=True), now=NOW)
    assert list(zip(df["request_id"], df["idx"], strict=True)) == [("a", 0)]
    assert run(log, Query(labelled=True), now=NOW)["request_id"].tolist() == ["a", "b"]


def test_since_version_and_where_combine(log: Path) -> None:
    df = run(log, Query(since="24h", where="Home == 'rent' AND \"ratio/total\" > 1"), now=NOW)
    assert df["request_id"].tolist() == ["b"]
    assert run(log, Query(version="v1"), now=NOW)["idx"].tolist() == [0, 1]
    until = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(NOW - 3 * HOUR))
    assert run(log, Query(until=until), now=NOW)["request_id"].tolist() == ["a", "a"]


def test_by_summarises_accuracy_per_group(log: Path) -> None:
    df = run(log, Query(by=["version"]), now=NOW).set_index("version")
    assert df.loc["v1", "records"] == 2 and df.loc["v1", "wrong"] == 1
    assert df.loc["v1", "accuracy"] == 0.0 and df.loc["v2", "accuracy"] == 1.0


def test_sql_sees_records_and_errors(log: Path) -> None:
    df = run(log, Query(sql="SELECT version, count(*) AS n FROM records GROUP BY 1 ORDER BY 1"),
             now=NOW)
    assert df.to_dict("records") == [{"version": "v1", "n": 2}, {"version": "v2", "n": 2}]
    assert run(log, Query(sql="SELECT count(*) AS n FROM errors"), now=NOW)["n"][0] == 0


@pytest.mark.parametrize(("query", "says"), [
    (Query(where="Hom == 'rent'"), "--where"),
    (Query(where="Home = "), "--where"),
    (Query(columns=["nope"]), "no column 'nope'"),
    (Query(since="yesterday"), "neither a duration"),
    (Query(sql="SELECT * FROM nowhere"), "--sql"),
    (Query(sql="SELECT 1", wrong=True), "--sql is the whole query"),
    (Query(limit=0), "--limit"),
])
def test_bad_queries_name_what_is_wrong(log: Path, query: Query, says: str) -> None:
    with pytest.raises(LooplineError, match=says.replace("(", r"\(")):
        run(log, query, now=NOW)


def test_a_missing_or_broken_log_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(LooplineError, match="no inference log"):
        run(tmp_path / "none.sqlite", Query())
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LooplineError, match="inference log .*bad.sqlite cannot be read"):
        run(bad, Query())


def test_parse_time_reads_durations_and_dates() -> None:
    assert parse_time("2h", "--since", now=NOW) == NOW - 2 * HOUR
    assert parse_time("1970-01-02", "--since") == 86400.0
    assert parse_time("1970-01-01T01:00+01:00", "--since") == 0.0


def test_the_store_answers_like_the_local_log(log: Path, tmp_path: Path) -> None:
    """`loopline log --log file:///…` (or s3://…): the same answers once the log is shipped."""
    import pandas as pd

    from loopline.serving import log_store
    from loopline.serving.shipping import Shipper

    queries = [Query(), Query(wrong=True, where="Home == 'rent'"),
               Query(since="24h", by=["version"]),
               Query(version="v2", columns=["request_id", "label"]),
               Query(sql="SELECT count(*) AS n FROM records WHERE correct")]
    local = [run(log, q, now=NOW) for q in queries]
    store = log_store.parse(f"file://{tmp_path}/store")
    shipper = Shipper(log, store, artifact="credit", replica="r-1", start=False)
    shipper.ship()
    shipper.close()
    for q, expected in zip(queries, local, strict=True):
        pd.testing.assert_frame_equal(run(store.url, q, now=NOW), expected)
    assert run(store.url, Query(wrong=True, where="Home == 'rent'"), now=NOW)[
        ["request_id", "idx"]].values.tolist() == [["a", 0]]
