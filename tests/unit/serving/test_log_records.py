"""The typed records layout of the log store (serving/log_records.py): names and values
round-trip, a record keeps exactly its own keys, classes keep their type."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from loopline.serving import log_records
from loopline.serving.inference_log import dumps, json_records

ODD = ["ratio/total", "a b", "x.y", "naïve €", "p:q", "100%", "-", "", "Ünï/%2F"]


def row(rid: str, inputs: object, preds: list, probs: list, classes: list, *, n: int,
        shadow: dict | None = None) -> tuple:
    return (rid, 1000.0 + len(rid), "v1", n, dumps(inputs), dumps(preds), dumps(probs),
            dumps(classes), 2.5, "v2" if shadow else None,
            dumps(shadow["pred"]) if shadow else None,
            dumps({"classes": shadow["classes"], "p": shadow["p"]}) if shadow else None)


def test_escaped_names_are_safe_and_round_trip() -> None:
    for name in ODD:
        escaped = log_records.escape(name)
        assert all(c.isascii() and (c.isalnum() or c in "_-%") for c in escaped), escaped
        assert log_records.unescape(escaped) == name
    assert log_records.escape("ratio/total") == "ratio%2Ftotal"
    assert len({log_records.escape(n) for n in ODD}) == len(ODD)


def test_names_apart_only_by_case_stay_apart_ignoring_case() -> None:
    """DuckDB compares column names ignoring case: escaped names must differ otherwise."""
    names = ["Age", "age", "AGE", "aGe", "Äge", "äge", "%41ge", "A%", "a%", "Hi", "hi"]
    escaped = [log_records.escape(n) for n in names]
    assert len({e.lower() for e in escaped}) == len(names), escaped
    assert escaped[:2] == ["%41ge", "age"] and [log_records.unescape(e) for e in escaped] == names
    assert log_records.names("x:", "Age") == ["x:%41ge", "x:Age"]  # and as shipped before
    assert log_records.names("x:", "ratio/total") == ["x:ratio%2Ftotal"]


def test_records_read_back_as_the_json_layout_gives_them(tmp_path) -> None:
    rows = [
        row("one", [{"Age": 30, "Home": "rent", **{k: i for i, k in enumerate(ODD)}}],
            ["bad"], [[0.7, 0.3]], ["bad", "good"], n=1),
        # columns, a gap, a feature of mixed kinds (number and text), a nested value
        row("cols", {"Age": [40, None], "Home": ["own", None], "mixed": [1, "a"],
                     "nested": [[1, 2], {"k": "v"}], "flag": [True, False]},
            ["good", "good"], [[0.1, 0.9], [0.2, 0.8]], ["bad", "good"], n=2),
        # another record set: keys the others lack, a float column, a class never seen
        row("recs", [{"Age": 1.5}, {"Home": "x", "big": 2**70}], ["bad", "maybe"],
            [[0.5, 0.2, 0.3], [0.1, 0.1, 0.8]], ["bad", "good", "maybe"], n=2,
            shadow={"pred": ["good", "bad"], "classes": ["bad", "good"],
                    "p": [[0.4, 0.6], [0.7, 0.3]]}),
        # numeric classes stay numbers
        row("ints", [{"Age": 2}], [1], [[0.25, 0.75]], [0, 1], n=1),
    ]
    table = log_records.records_table(rows, "r1")
    pq.write_table(table, tmp_path / "f.parquet")
    back = log_records.frame_records(pq.read_table(tmp_path / "f.parquet"))
    want = list(json_records(rows))
    assert back == want
    # a column of ints reads back as ints; with a float in the batch, as numbers
    assert isinstance(back[0]["inputs"]["ratio/total"], int) and back[-1]["prediction"] == 1
    names = set(table.column_names)
    assert {"x:%41ge", "x:ratio%2Ftotal", "j:mixed", "j:nested", "x:big", "p:bad", "s:good",
            "x:flag"} <= names
    types = dict(zip(table.column_names, table.schema.types, strict=True))
    assert types["x:%41ge"] == pa.float64() and types["x:flag"] == pa.bool_()
    assert types["p:maybe"] == pa.float64() and types["idx"] == pa.int64()


def test_a_batch_of_one_schema_names_its_columns_in_the_metadata() -> None:
    table = log_records.records_table([row("r", [{"a/b": 1}], ["x"], [[1.0]], ["x"], n=1)],
                                      "r1")
    meta = orjson.loads(table.schema.metadata[log_records.META_KEY])
    assert meta["columns"] == {"x:a%2Fb": "a/b", "p:x": "x"} and meta["classes"] == {"x": "x"}
    assert table.column("absent").to_pylist() == [None]
