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
    with pytest.raises(LooplineError, match="cannot read the inference log .*bad.sqlite"):
        run(bad, Query())


def test_parse_time_reads_durations_and_dates() -> None:
    assert parse_time("2h", "--since", now=NOW) == NOW - 2 * HOUR
    assert parse_time("1970-01-02", "--since") == 86400.0
    assert parse_time("1970-01-01T01:00+01:00", "--since") == 0.0
