"""The typed ``records`` table of the log store: one row per record, no JSON left to parse.

The SQLite log keeps a request's inputs, predictions and probabilities as JSON text (one
row per request is the cheapest write); parsing that text again for every record was most
of what ``loopline monitor`` spent over millions of records. So the shipper turns each
batch into typed columns once, and readers scan columns::

    request_id, idx, ts, model_version, latency_ms, n, prediction, shadow_version,
    shadow_prediction, absent, replica,
    x:<feature>   one column per input feature,
    j:<feature>   a feature whose values in the batch mix types, as JSON text per value,
    p:<class>     the probability of each class (DOUBLE),
    s:<class>     the shadow model's probability of each class (DOUBLE).

A feature column is BOOLEAN, BIGINT, DOUBLE or VARCHAR when every value of the batch is of
that kind (or null; ints and floats together are DOUBLE), so a value reads back as the
caller sent it; values of mixed kinds (a number and a string, a list) keep their JSON.
``absent`` lists, as JSON, the features of the file a record did not carry (null when it
carried them all), so a record's inputs come back with exactly its own keys.

Names: a user's column or class can be any string, and DuckDB compares names ignoring case
(``read_parquet`` renames the second of ``x:Age`` and ``x:age`` to ``x:age_1``, and a query
for ``"x:age"`` gets Age's values) and treats some characters specially, so each name is
escaped to ``[a-z0-9_-]`` plus ``%XX`` (UTF-8 bytes, upper-case hex) for anything else,
capitals included (``ratio/total`` is ``x:ratio%2Ftotal``, ``Age`` is ``x:%41ge``): two
escaped names are equal ignoring case only when they are equal. :func:`unescape` reverses
it. Files shipped before kept capitals as they were (:func:`legacy_column`); readers take
both names (:func:`names`). The file's key-value metadata also maps every column to its
original name and every class text to the class as the model gave it (a number stays a
number). Files of different schemas (a class or feature added, a type changed) read
together by name: DuckDB's ``union_by_name``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import unquote

import orjson

META_KEY = b"loopline.records"
FIXED = ("request_id", "idx", "ts", "model_version", "latency_ms", "n", "prediction",
         "shadow_version", "shadow_prediction", "absent", "replica")
INPUT, JSON_INPUT, PROBA, SHADOW = "x:", "j:", "p:", "s:"
_UNSAFE = re.compile(r"[^a-z0-9_-]")
_LEGACY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")  # what files shipped before escaped
_INT64 = 2**63


def _hex(m: re.Match) -> str:
    return "".join(f"%{b:02X}" for b in m[0].encode())


def escape(name: str) -> str:
    """``name`` with every character outside ``[a-z0-9_-]`` as ``%XX`` of its UTF-8."""
    return _UNSAFE.sub(_hex, name)


def unescape(name: str) -> str:
    """The name :func:`escape` was given."""
    return unquote(name, errors="strict")


def column(prefix: str, name: str) -> str:
    return prefix + escape(name)


def legacy_column(prefix: str, name: str) -> str:
    """The column of ``name`` in files shipped before capitals were escaped."""
    return prefix + _LEGACY_UNSAFE.sub(_hex, name)


def names(prefix: str, name: str) -> list[str]:
    """Every column ``name`` may have in a store: its own, then that of files shipped before
    (when it differs, i.e. ``name`` has capitals)."""
    return list(dict.fromkeys([column(prefix, name), legacy_column(prefix, name)]))


def text(value: Any) -> str:
    """A class or prediction as text: a string as is, anything else as its JSON (what
    DuckDB's ``from_json(..., 'VARCHAR')`` gives for the JSON layout)."""
    from loopline.serving.inference_log import dumps

    return value if isinstance(value, str) else dumps(value)


def _kind(values: Iterable[Any]) -> str:
    """The one arrow type all of ``values`` fit (None ignored), or ``json``."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds or kinds <= {float} or kinds == {int, float}:
        return "double"
    if kinds == {bool}:
        return "bool"
    if kinds == {int}:
        return "int" if all(-_INT64 <= v < _INT64 for v in values if v is not None) else "json"
    if kinds == {str}:
        return "string"
    return "json"


def _feature_array(values: list[Any]) -> tuple[str, Any]:
    import pyarrow as pa

    kind = _kind(values)
    if kind == "json":
        return JSON_INPUT, pa.array([None if v is None else text(v) if not isinstance(v, str)
                                     else orjson.dumps(v).decode() for v in values], pa.string())
    types = {"double": pa.float64(), "bool": pa.bool_(), "int": pa.int64(),
             "string": pa.string()}
    if kind == "double":
        values = [None if v is None else float(v) for v in values]
    return INPUT, pa.array(values, types[kind])


def _records(inputs: Any, n: int) -> list[dict]:
    if isinstance(inputs, dict):  # a /predict_batch request's columns
        return [{k: v[i] for k, v in inputs.items()} for i in range(n)]
    return inputs


def records_table(rows: Sequence[Sequence[Any]], replica: str) -> Any:
    """The typed records (see the module doc) of rows of the SQLite ``requests`` table."""
    import pyarrow as pa

    fixed: dict[str, list] = {k: [] for k in FIXED}
    recs: list[dict] = []
    probs: dict[str, list] = {}
    shadow: dict[str, list] = {}
    classes: dict[str, Any] = {}
    for (rid, ts, version, n, inputs, preds, proba, cls, latency,
         s_version, s_preds, s_proba) in rows:
        records = _records(orjson.loads(inputs), n)
        preds, proba, cls = orjson.loads(preds), orjson.loads(proba), orjson.loads(cls)
        s_preds = orjson.loads(s_preds) if s_preds else None
        s_proba = orjson.loads(s_proba) if s_proba else None
        start = len(recs)
        _probabilities(probs, cls, proba, start, n, classes)
        if s_proba:
            _probabilities(shadow, s_proba["classes"], s_proba["p"], start, n, classes)
        for i in range(n):
            recs.append(records[i])
            for k, v in (("request_id", rid), ("idx", i), ("ts", ts), ("model_version", version),
                         ("latency_ms", latency), ("n", n), ("shadow_version", s_version),
                         ("prediction", text(preds[i])),
                         ("shadow_prediction", text(s_preds[i]) if s_preds else None)):
                fixed[k].append(v)
    total = len(recs)
    names = list(dict.fromkeys(k for r in recs for k in r))
    fixed["absent"] = [_absent(r, names) for r in recs]
    fixed["replica"] = [replica] * total
    types = {"idx": pa.int64(), "n": pa.int64(), "ts": pa.float64(), "latency_ms": pa.float64()}
    arrays = {k: pa.array(v, types.get(k, pa.string())) for k, v in fixed.items()}
    original: dict[str, str] = {}
    for name in names:
        prefix, array = _feature_array([r.get(name) for r in recs])
        arrays[column(prefix, name)] = array
        original[column(prefix, name)] = name
    for prefix, found in ((PROBA, probs), (SHADOW, shadow)):
        for name, values in found.items():
            values.extend([None] * (total - len(values)))
            arrays[column(prefix, name)] = pa.array(values, pa.float64())
            original[column(prefix, name)] = name
    meta = {META_KEY: orjson.dumps({"columns": original, "classes": classes})}
    return pa.table(arrays).replace_schema_metadata(meta)


def _probabilities(out: dict[str, list], cls: list, proba: list, start: int, n: int,
                   classes: dict[str, Any]) -> None:
    """Append a request's ``n`` rows of probabilities (in the order of ``cls``) to the
    columns of ``out`` by class text, padding with None the rows a class was not in."""
    for j, c in enumerate(cls):
        name = text(c)
        classes.setdefault(name, c)
        values = out.setdefault(name, [])
        values.extend([None] * (start - len(values)))
        values.extend(None if row[j] is None else float(row[j]) for row in proba[:n])


def _absent(record: dict, names: list[str]) -> str | None:
    if len(record) == len(names):
        return None
    return orjson.dumps([k for k in names if k not in record]).decode()


def _shadow(data: dict, shadow: list[tuple[str, Any]], i: int) -> dict | None:
    found = {c: data[col][i] for col, c in shadow if data[col][i] is not None}
    return found or None


def frame_records(table: Any) -> list[dict]:
    """The records of one typed file as rows of :func:`loopline.serving.inference_log.frame`
    (inputs and probabilities as dicts under their original names), without the label."""
    meta = orjson.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    original: dict[str, str] = meta.get("columns", {})
    classes: dict[str, Any] = meta.get("classes", {})

    def name(col: str) -> str:
        return original.get(col) or unescape(col.split(":", 1)[1])

    data = table.to_pydict()
    inputs = [(c, name(c), c.startswith(JSON_INPUT)) for c in data
              if c.startswith((INPUT, JSON_INPUT))]
    probs = [(c, classes.get(name(c), name(c))) for c in data if c.startswith(PROBA)]
    shadow = [(c, classes.get(name(c), name(c))) for c in data if c.startswith(SHADOW)]
    out = []
    for i in range(table.num_rows):
        absent = set(orjson.loads(data["absent"][i])) if data["absent"][i] else ()
        record = {}
        for col, key, is_json in inputs:
            if key not in absent:
                v = data[col][i]
                record[key] = orjson.loads(v) if is_json and v is not None else v
        pred, s_pred = data["prediction"][i], data["shadow_prediction"][i]
        out.append({
            "request_id": data["request_id"][i], "idx": data["idx"][i], "ts": data["ts"][i],
            "model_version": data["model_version"][i], "inputs": record,
            "prediction": classes.get(pred, pred),
            "probabilities": {c: data[col][i] for col, c in probs if data[col][i] is not None},
            "latency_ms": data["latency_ms"][i], "shadow_version": data["shadow_version"][i],
            "shadow_prediction": None if s_pred is None else classes.get(s_pred, s_pred),
            "shadow_probabilities": _shadow(data, shadow, i)})
    return out
