"""``loopline monitor`` over a log of any size: each window's figures computed by DuckDB.

:func:`loopline.monitoring.monitor.run` takes the log as a pandas frame, one row per record
with its inputs as dicts: fine for a day of one replica, not for ten million records. Here
the same figures come from SQL over the log's window (:class:`loopline.serving.log_store.
LogWindow`: the store's Parquet partitions scanned in place with the time window and version
pushed down, or the local SQLite log), reading only the columns each figure needs:

- one pass over the records (the store's typed ``records``, column by column, beside any
  JSON ``requests`` (the local log, a store's first layout) unnested to one row per record,
  the inputs as records or as columns alike) gives, per window and version, the records and
  requests, the missing counts per feature, predicted classes, invalid probabilities and the
  latencies counted per log-scale bucket; a window's figures are merged from its versions';
- one pass over the labelled records only (the labels joined to each record's prediction
  and probabilities, no inputs) gives their probabilities by confusion cell (8 bytes a
  labelled record: accuracy, precision, recall, F1, Brier, log loss, calibration error and
  ROC AUC in numpy, as the frame path) and the right answers;
- one pass reads the inputs of the drift samples' records only (a filter on the sample key,
  so the others' inputs are never cast), and the latencies of the records in the buckets
  that hold a percentile's ranks: the exact percentiles (np.percentile's) in bounded
  memory;
- the drift tests compare the reference with a bounded, seeded sample of each window's
  records (and of each version's in it): the ``sample_rows`` records whose
  ``hash(request_id, idx, seed)`` is smallest (every record when there are no more), the
  same sample from every copy of the log. A sampled window says so in its report
  (``drift_sample``: rows, of, seed) and in the reason of its drift grade.

Everything else (grades, reasons, status, actions) is :func:`loopline.monitoring.monitor.
assemble`, shared with the frame path, so both give the same report on the same records
(up to floating-point summation order, and drift on a sample when a window is larger).
Memory is bounded by DuckDB's limit (it spills beyond), the samples and the labelled
records' probabilities, not by the number of records.
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from loopline.config.operations import MonitorConfig
from loopline.monitoring import monitor as mon
from loopline.monitoring import targets as tg

SAMPLE_ROWS = 20_000  # records per window (and per version) the drift tests compare
SEED = 0
COLUMNS = ("request_id", "ts", "model_version", "n", "inputs", "predictions", "probabilities",
           "classes", "latency_ms")


def _lit(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def fields(names: list[str]) -> dict[str, str]:
    """The field of each feature in the struct ``x`` of a record: its own name, unless two
    names are equal ignoring case (``Age``, ``age``), which DuckDB's fields cannot be
    (``struct_pack`` and ``from_json`` refuse them); then every name escaped
    (:func:`loopline.serving.log_records.escape`: equal ignoring case only when equal)."""
    from loopline.serving.log_records import escape

    if len({n.casefold() for n in names}) == len({n.lower() for n in names}) == len(names):
        return {n: n for n in names}
    return {n: escape(n) for n in names}


def _pointer(name: str) -> str:
    """The JSON Pointer of key ``name`` (case and any character kept, unlike a struct)."""
    return _lit("/" + name.replace("~", "~0").replace("/", "~1"))


def _num(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() or abs(value) > 2**52 \
        else repr(int(value))


def feature_types(reference: pd.DataFrame, columns: list[str],
                  numeric: list[str]) -> dict[str, str]:
    """DuckDB types to read the logged inputs as, from the reference's dtypes (so a number
    of a categorical column stays a number, as it is in the reference)."""
    out = {}
    for c in columns:
        kind = reference[c].dtype.kind if c in reference.columns else "O"
        out[c] = ("BIGINT" if kind in "iu" else "DOUBLE" if kind == "f" or c in numeric
                  and kind not in "b" else "BOOLEAN" if kind == "b" else "VARCHAR")
    return out


class _Windows:
    """The span's windows, and which layouts of the log hold its records: ``json`` (the
    local log, a store's ``requests`` shipped before) and ``typed`` (the store's typed
    ``records``: the columns of its view, None when there are none)."""

    def __init__(self, until: float, size: float, count: int, *, json: bool = True,
                 typed: list[str] | None = None) -> None:
        self.until, self.size, self.count = until, size, count
        self.start = until - count * size
        self.typed = typed
        self.json = json or not typed  # an empty span still reads (no rows) through one


def layouts(con: Any, found: dict[str, bool]) -> dict[str, Any]:
    """``json`` and ``typed`` of :class:`_Windows` for a window of
    :class:`loopline.serving.log_store.LogWindow` (its ``layouts``)."""
    typed = None
    if found.get("typed"):
        typed = [r[0] for r in con.execute("SELECT column_name FROM (DESCRIBE records)")
                 .fetchall()]
    return {"json": bool(found.get("json", True)), "typed": typed}


def _window_sql(win: _Windows) -> tuple[str, str, str]:
    """SQL for the span of ``win``: (the rows' filter, ``w0`` = their window by division, and
    ``w`` = ``w0`` corrected to the same comparisons as the frame path's windows, at their
    float boundaries; ``w`` reads the column ``w0``). Window 0 is the oldest."""
    s, u, n = _num(win.size), _num(win.until), win.count
    start = f"({u} - {n} * {s})"
    return (f"ts >= {start} AND ts < {u}", f"CAST(floor((ts - {start}) / {s}) AS BIGINT)",
            f"w0 - CAST(ts < {u} - ({n} - w0) * {s} AS BIGINT) "
            f"+ CAST(ts >= {u} - ({n} - w0 - 1) * {s} AS BIGINT)")


def _in_windows(win: _Windows, table: str) -> str:
    """``table``'s rows in the span, with their window ``w`` (0 = the oldest) and version."""
    span, w0, w = _window_sql(win)
    return (f"(SELECT * EXCLUDE (w0), {w} AS w FROM (SELECT *, model_version AS version, "
            f"{w0} AS w0 FROM {table} WHERE {span}))")


def _requests(win: _Windows, inputs: bool) -> str:
    """CTE ``req``: the requests in the span with their window ``w`` (0 = the oldest)."""
    span, w0, w = _window_sql(win)
    return (f"req0 AS (SELECT request_id, ts, model_version AS version, latency_ms, n, "
            f"predictions, probabilities, classes{', inputs' if inputs else ''}, "
            f"{w0} AS w0 FROM requests WHERE {span}), "
            f"req AS (SELECT * EXCLUDE (w0), {w} AS w FROM req0)")


def _records(win: _Windows, types: dict[str, str] | None, classes: list[str]) -> str:
    """CTE ``rec``, one row per record: w, version, request_id, idx, ts, latency_ms,
    prediction, ``p0``… (the probability of each of ``classes``, in order; null when the
    record has none for it) and x, the struct of the ``types`` features when given; from
    the typed records and the JSON requests alike. Columns, not a list per record, so the
    typed records' probabilities are read as they are stored."""
    parts = []
    if win.typed is not None:
        parts.append(_typed_records(win, types, classes))
    if win.json:
        parts.append(_json_records(win, types, classes))
    probs = "".join(f", p{i}" for i in range(len(classes)))
    body = " UNION ALL ".join(f"SELECT w, version, request_id, ts, latency_ms, idx, "
                              f"prediction{probs}{', x' if types else ''} FROM {p}" for p in parts)
    return f"rec AS ({body})"


def _typed_records(win: _Windows, types: dict[str, str] | None, classes: list[str]) -> str:
    """The typed records (:mod:`loopline.serving.log_records`) as ``rec`` rows: no JSON but
    the values of mixed kinds; a column no file of the span has is null."""
    from loopline.serving.log_records import INPUT, JSON_INPUT, PROBA, names

    have = set(win.typed or [])

    def either(found: list[str], kind: str) -> str:
        return (found[0] if len(found) == 1 else f"coalesce({', '.join(found)})" if found
                else f"NULL::{kind}")

    def proba(c: str) -> str:  # under its name, or that of files shipped before
        return either([f"CAST({_ident(n)} AS DOUBLE)" for n in names(PROBA, c) if n in have],
                      "DOUBLE")

    def value(c: str, kind: str) -> str:
        return either([f"TRY_CAST({_ident(x)} AS {kind})" for x in names(INPUT, c) if x in have]
                      + [f"from_json({_ident(j)}, {_lit(json.dumps(kind))})"
                         for j in names(JSON_INPUT, c) if j in have], kind)

    xs = ""
    if types:
        field = fields(list(types))
        xs = ", struct_pack(" + ", ".join(f"{_ident(field[c])} := {value(c, k)}"
                                          for c, k in types.items()) + ") AS x"
    probs = "".join(f", {proba(c)} AS p{i}" for i, c in enumerate(classes))
    return (f"(SELECT w, version, request_id, ts, latency_ms, idx, "
            f"CAST(prediction AS VARCHAR) AS prediction{probs}{xs} "
            f"FROM {_in_windows(win, 'records')})")


def _json_records(win: _Windows, types: dict[str, str] | None, classes: list[str]) -> str:
    """The JSON requests (the local log, a store's first layout) unnested to ``rec`` rows."""
    req = _requests(win, bool(types))
    if types:
        field = fields(list(types))
        if all(field[c] == c for c in types):  # one parse of each request to its struct
            rows = f"from_json(inputs, {_lit(json.dumps([types]))})"
            cols = f"from_json(inputs, {_lit(json.dumps({k: [v] for k, v in types.items()}))})"
        else:  # names apart only by case: each key by its JSON Pointer, into escaped fields
            rows = ("list_transform(from_json(inputs, '[\"JSON\"]'), lambda r: struct_pack(" +
                    ", ".join(f"{_ident(field[c])} := from_json(json_extract(r, {_pointer(c)}), "
                              f"{_lit(json.dumps(k))})" for c, k in types.items()) + "))")
            cols = "struct_pack(" + ", ".join(
                f"{_ident(field[c])} := from_json(json_extract(inputs, {_pointer(c)}), "
                f"{_lit(json.dumps([k]))})" for c, k in types.items()) + ")"
        pack = ", ".join(f"{_ident(field[c])} := colsx.{_ident(field[c])}[i + 1]" for c in types)
        xs = (f", CASE WHEN starts_with(ltrim(inputs), '{{') THEN list_transform(range(n), "
              f"lambda i: struct_pack({pack})) ELSE {rows} END AS xs")
        inner = (f"(SELECT *, CASE WHEN starts_with(ltrim(inputs), '{{') THEN "
                 f"{cols} END AS colsx FROM req)")
        unnest_x = ", unnest(xs) AS x"
    else:
        xs, inner, unnest_x = "", "req", ""
    probs = "".join(f", pl[list_position(cls, {_lit(c)})] AS p{i}" for i, c in enumerate(classes))
    return (f"(WITH {req} SELECT w, version, request_id, ts, latency_ms, idx, prediction{probs}"
            f"{', x' if types else ''} FROM (SELECT w, version, request_id, ts, latency_ms, cls, "
            f"unnest(range(n)) AS idx, unnest(preds) AS prediction, unnest(probs) AS pl{unnest_x} "
            "FROM (SELECT *, from_json(predictions, '[\"VARCHAR\"]') AS preds, from_json("
            "probabilities, '[[\"DOUBLE\"]]') AS probs, from_json(classes, '[\"VARCHAR\"]') "
            f"AS cls{xs} FROM {inner})))")


def _classes(classes: list[str], positive: str) -> list[str]:
    """The classes whose probabilities a ``rec`` row holds (``p0``…)."""
    return list(dict.fromkeys([*classes, positive]))


def _scored(classes: list[str], positive: str) -> str:
    """``p_pos`` and ``bad`` (invalid probabilities over ``classes``) of a ``rec`` row, whose
    ``p0``… are those of :func:`_classes` (``classes``, then ``positive`` if not in them)."""
    pcs = [f"p{i}" for i in range(len(classes))]
    if pcs:
        valid = " AND ".join([*(f"{p} BETWEEN 0 AND 1" for p in pcs),
                              f"abs({' + '.join(pcs)} - 1.0) <= 1e-4"])
        bad = f"coalesce(NOT ({valid}), true)"
    else:
        bad = "true"
    return f"p{_classes(classes, positive).index(positive)} AS p_pos, {bad} AS bad"


def _every(classes: list[str], positive: str, seed: int) -> str:
    """CTE ``d``: every ``rec`` row with p_pos, bad and h (the sample key); no label."""
    return f"d AS (SELECT *, {_scored(classes, positive)}, hash(request_id, idx, {int(seed)}) " \
        "AS h FROM rec)"


def _labelled(classes: list[str], positive: str) -> str:
    """CTE ``e``: the labelled ``rec`` rows only (an inner join: the records without a
    label are never carried), with label, p_pos, bad, ok (valid), y and yhat."""
    pos = _lit(positive)
    return (f"lab AS (SELECT rec.*, f.label FROM rec JOIN _labels f ON "
            "f.request_id = rec.request_id AND f.idx = rec.idx), "
            f"e0 AS (SELECT *, {_scored(classes, positive)} FROM lab), "
            f"e AS (SELECT *, NOT bad AS ok, label = {pos} AS y, prediction = {pos} AS yhat "
            "FROM e0)")


# the labelled, valid records by (label is positive, predicted positive): their probabilities
_CELLS = {"tp": "y AND yhat", "fn": "y AND NOT yhat", "fp": "NOT y AND yhat",
          "tn": "NOT y AND NOT yhat"}


def _figure_sql(features: list[str], field: dict[str, str]) -> str:
    """One pass over the records (``d``), one row per window and version (the window's
    figures are merged from its versions' rows: sums, lists, histograms). The drift
    samples are :func:`_sample_sql`'s, the labels' figures :func:`_label_sql`'s.

    Grouped twice: first by window, version, predicted class, latency bucket and first
    record of a request (a few thousand groups), then by window and version. DuckDB's
    ``histogram()`` of the predictions and buckets over the records themselves planned a
    materialised copy of every record: 1.4 s against 1.0 s on 10,000,000 records."""
    counts = ", ".join(f"count(x.{_ident(field[c])}) AS c{i}" for i, c in enumerate(features))
    sums = ", ".join(f"sum(c{i})::BIGINT AS c{i}" for i in range(len(features)))
    return (
        f"SELECT * FROM (WITH g AS (SELECT w, version, prediction, {_BUCKET} AS b, "
        "idx = 0 AS first, count(*) AS n, sum(latency_ms) FILTER (WHERE idx = 0) AS rsum, "
        f"{counts + ', ' if counts else ''}sum(p_pos) AS psum, count(p_pos) AS pcount, "
        "count(*) FILTER (WHERE bad) AS invalid FROM d GROUP BY ALL), "
        "m AS (SELECT w, version, sum(n)::BIGINT AS records, coalesce(sum(n) FILTER (WHERE "
        f"first), 0)::BIGINT AS requests, sum(rsum) AS rsum, {sums + ', ' if sums else ''}"
        "sum(psum) AS psum, sum(pcount)::BIGINT AS pcount, sum(invalid)::BIGINT AS invalid "
        "FROM g GROUP BY ALL), "
        "s AS (SELECT w, version, map_from_entries(list({'key': prediction, 'value': n})) AS "
        "shares FROM (SELECT w, version, prediction, sum(n)::BIGINT AS n FROM g GROUP BY ALL) "
        "GROUP BY ALL), "
        # the latency percentiles' bucket counts, over records and over requests (first)
        "l AS (SELECT w, version, map_from_entries(list({'key': b, 'value': n})) AS lat_b, "
        "map_from_entries(list({'key': b, 'value': rn}) FILTER (WHERE rn > 0)) AS rlat_b FROM "
        "(SELECT w, version, b, sum(n)::BIGINT AS n, coalesce(sum(n) FILTER (WHERE first), 0)"
        "::BIGINT AS rn FROM g GROUP BY ALL) GROUP BY ALL) "
        "SELECT * FROM m JOIN s USING (w, version) JOIN l USING (w, version))")


def _sample_sql(latency: str) -> str:
    """The drift sample's candidates per window and version: the records whose key ``h``
    is at most the group's threshold (``_thr``); and, in the same pass, the latencies of
    the records for which ``latency`` holds (:func:`latency_filter`). A filter, not only an
    aggregate's FILTER, so the inputs are read and cast for those records only."""
    return ("SELECT w, version, list({'h': h, 'x': x}) FILTER (WHERE h <= t) AS sample, "
            "list({'b': b, 'latency_ms': latency_ms, 'first': idx = 0}) FILTER (WHERE "
            f"{latency}) AS lat FROM (SELECT *, {_BUCKET} AS b FROM d) JOIN _thr USING "
            f"(w, version) WHERE h <= t OR ({latency}) GROUP BY w, version")


def _label_sql() -> str:
    """Over the labelled records (``e``), per window and version: the probabilities of the
    valid ones, 8 bytes each, by confusion cell (the performance figures, ROC AUC ranks
    them, in numpy as the frame path does), the labelled and the right answers."""
    parts = ["w", "version",
             *(f"list(p_pos) FILTER (WHERE ok AND {cond}) AS {cell}"
               for cell, cond in _CELLS.items()),
             "count(*) AS labelled_all", "count(*) FILTER (WHERE label = prediction) AS correct_all"]
    return f"SELECT {', '.join(parts)} FROM e GROUP BY w, version"


_BUCKET = ("CASE WHEN latency_ms > 0 THEN CAST(floor(log2(latency_ms) * 256) AS BIGINT) + 1 "
           "ELSE -2147483648 END")  # 256 buckets an octave; zero and below in one


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's linear interpolation (np.percentile's), to the last bit."""
    diff = b - a
    return float(b - diff * (1 - t)) if t >= 0.5 else float(a + diff * t)


def latency_ranks(rows: list[dict]) -> tuple[dict, dict, dict]:
    """Per window (version None) and per window and version (``out``): records, requests,
    and where the latency p50 and p99 over records (``lat``) and over requests (``rlat``)
    lie: the buckets (``wanted``: (w, version, bucket) -> (what, offset)) that hold their
    ranks, from the figures' rows' bucket counts (``groups``)."""
    groups = _bucket_counts(rows)
    out: dict[tuple[int, str | None], dict] = {}
    wanted: dict[tuple[int, str | None, int], list] = {}  # (w, v, bucket) -> needs
    for key, buckets in groups.items():
        info = out[key] = {"records": sum(x[1] for x in buckets),
                           "requests": sum(x[2] for x in buckets)}
        for what, col in (("lat", 1), ("rlat", 2)):
            n = info["records" if what == "lat" else "requests"]
            if not n:
                info[what] = None
                continue
            for q in (0.5, 0.99):
                h = (n - 1) * q
                for rank in {int(math.floor(h)), int(math.ceil(h))}:
                    seen = 0
                    for bucket, *cs in buckets:
                        if rank < seen + cs[col - 1]:
                            wanted.setdefault((key[0], key[1], bucket), []).append(
                                (what, rank - seen))
                            break
                        seen += cs[col - 1]
    return out, wanted, groups


def latency_filter(wanted: dict) -> str:
    """SQL true for the records (``w``, bucket ``b``) in a wanted bucket of their window (of
    any version: :func:`latency_percentiles` keeps a version's own): a few terms a row,
    not one per (window, version, bucket)."""
    buckets: dict[int, set[int]] = {}
    for w, _, b in wanted:
        buckets.setdefault(w, set()).add(b)
    return " OR ".join(f"(w = {w} AND b IN ({', '.join(map(str, sorted(bs)))}))"
                       for w, bs in sorted(buckets.items())) or "false"


def latency_percentiles(out: dict, wanted: dict, groups: dict, values: list[tuple]) -> dict:
    """``out`` of :func:`latency_ranks` with the percentiles, exactly as np.percentile, from
    the records of the wanted buckets (``values``: w, version, bucket, latency, first of its
    request); memory bounded by the largest bucket that holds a percentile."""
    found: dict[tuple[int, str | None, int, str], list[float]] = {}
    for w, v, b, lat, first in values:
        for version in (None, v):
            if (w, version, b) in wanted:
                found.setdefault((w, version, b, "lat"), []).append(lat)
                if first:
                    found.setdefault((w, version, b, "rlat"), []).append(lat)
    at: dict[tuple, float] = {}
    for (w, v, b), needs in wanted.items():
        for what, offset in needs:
            at[(w, v, what, offset, b)] = sorted(found[(w, v, b, what)])[offset]
    for key, info in out.items():
        for what in ("lat", "rlat"):
            n = info["records" if what == "lat" else "requests"]
            if not n:
                continue
            picked = []
            for q in (0.5, 0.99):
                h = (n - 1) * q
                lo, hi = int(math.floor(h)), int(math.ceil(h))
                picked.append(_lerp(_value(at, key, what, lo, groups[key], what == "rlat"),
                                    _value(at, key, what, hi, groups[key], what == "rlat"),
                                    h - lo))
            info[what] = picked
    return out


def _pairs(found: Any) -> list:
    """An arrow map's (key, count) pairs (a dict or a list of pairs; null: none)."""
    return list((found or {}).items()) if isinstance(found, dict | None) else found


def _bucket_counts(rows: list[dict]) -> dict[tuple[int, str | None], list]:
    """(bucket, records, requests) in bucket order per window and version (the figures'
    rows' histograms), and per window (version None) summed from its versions'."""
    merged: dict[tuple[int, str | None], dict[int, list[int]]] = {}
    for row in rows:
        for i, name in ((0, "lat_b"), (1, "rlat_b")):
            for bucket, c in _pairs(row[name]):
                for key in ((row["w"], row["version"]), (row["w"], None)):
                    merged.setdefault(key, {}).setdefault(bucket, [0, 0])[i] += c
    return {key: [(b, c, rc) for b, (c, rc) in sorted(buckets.items())]
            for key, buckets in sorted(merged.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))}


def _value(at: dict, key: tuple, what: str, rank: int, buckets: list, requests: bool) -> float:
    seen = 0
    for bucket, c, rc in buckets:
        size = rc if requests else c
        if rank < seen + size:
            return at[(key[0], key[1], what, rank - seen, bucket)]
        seen += size
    raise AssertionError("a rank beyond the count")


def _performance(cells: dict[str, np.ndarray]) -> dict:
    """:func:`loopline.monitoring.monitor.performance` from the labelled records'
    probabilities by confusion cell."""
    tp, fn, fp, tn = (len(cells[c]) for c in ("tp", "fn", "fp", "tn"))
    n = tp + fn + fp + tn
    pos = np.concatenate([cells["tp"], cells["fn"]])
    neg = np.concatenate([cells["fp"], cells["tn"]])
    p = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    clipped = np.clip(p, 1e-15, 1 - 1e-15)
    out = {"labels": int(n), "accuracy": (tp + tn) / n,
           "precision": tp / (tp + fp) if tp + fp else 0.0,
           "recall": tp / (tp + fn) if tp + fn else 0.0,
           "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0,
           "brier": float(np.mean((y - p) ** 2)), "ece": mon._ece(y, p),
           "log_loss": float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)))}
    out["roc_auc"] = _auc(pos, neg) if len(pos) and len(neg) else None
    return out


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC of the positives' probabilities against the negatives' (the Mann-Whitney U,
    ties counted half, as sklearn's roc_auc_score): per positive, the negatives below it
    and half those equal to it, found by binary search in the sorted negatives (one sort of
    the negatives, not a ranking of everything)."""
    neg = np.sort(neg)
    below = np.searchsorted(neg, pos, side="left")
    upto = np.searchsorted(neg, pos, side="right")
    u = float(below.sum()) + 0.5 * float((upto - below).sum())  # integers and halves: exact
    return float(u / (len(pos) * len(neg)))


def _values(scalar: Any) -> np.ndarray:
    values = scalar.values
    return (np.zeros(0) if values is None else
            np.asarray(values.to_numpy(zero_copy_only=False), dtype=float))


def _sample(values: list, rows: int) -> pd.DataFrame | None:
    """The ``rows`` records among the candidates (lists of {h, x}) with the smallest h."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = [v for v in values if v is not None and len(v)]
    if not values:
        return None
    values = pa.concat_arrays(values)
    if len(values) > rows:
        values = values.take(pc.sort_indices(values.field("h"))[:rows])
    return pa.Table.from_struct_array(values.field("x")).to_pandas()


def window_figures(log: Any, win: _Windows, reference: pd.DataFrame, numeric: list[str],
                   categorical: list[str], classes: list[str], positive: str,
                   cfg: MonitorConfig, *, sample_rows: int = SAMPLE_ROWS,
                   seed: int = SEED) -> dict[int, dict]:
    """Per window index (0 = oldest) that has records: ``{"all": fig, "versions": {v: fig}}``
    with the figures of :func:`loopline.monitoring.monitor.frame_figures`, from ``log`` (a
    :class:`loopline.serving.log_store.LogWindow`; its feedback is asked for only once the
    records' own figures are computed)."""
    import pyarrow as pa

    from loopline.serving.log_store import arrow

    con = log.con
    features = numeric + categorical
    targets = cfg.targets
    slice_cols = [c for c in (targets.slice_gap.columns if targets.slice_gap else [])]
    types = feature_types(reference, list(dict.fromkeys(features + slice_cols)), numeric)
    every = f"WITH {_records(win, types, _classes(classes, positive))}, " \
        f"{_every(classes, positive, seed)} "
    field = fields(list(types))
    table = arrow(con.sql(every + _figure_sql(features, field)))
    rows = table.to_pylist()
    lat, wanted, groups = latency_ranks(rows)
    counts = [(w, v, r["records"]) for (w, v), r in lat.items() if v is not None]
    if not counts:
        return {}
    # a little more than sample_rows keys fall below t (the tail beyond 5 sigma never shows):
    # the sample takes the sample_rows smallest, every record when there are no more
    full = 2**64 - 1
    margin = sample_rows + 5 * math.sqrt(sample_rows) + 10
    thresholds = {(w, v): full if c <= sample_rows else min(full, int(margin / c * 2**64))
                  for w, v, c in counts}
    con.register("_thr", pa.table({
        "w": pa.array([k[0] for k in thresholds], pa.int64()),
        "version": pa.array([k[1] for k in thresholds], pa.string()),
        "t": pa.array(list(thresholds.values()), pa.uint64())}))
    samples = arrow(con.sql(every + _sample_sql(latency_filter(wanted))))
    latency_percentiles(lat, wanted, groups, [
        (w, v, x["b"], x["latency_ms"], x["first"])
        for w, v, xs in zip(samples.column("w").to_pylist(), samples.column("version").to_pylist(),
                            samples.column("lat").to_pylist(), strict=True) for x in xs or []])
    # the labelled records only, with only the columns their figures need. The labels (one a
    # record, the latest) are chosen once, into a table: choosing them inside the join took
    # 1.3 s more than this on 2,500,000 labels (the join's build side grouped and unioned)
    log.ready("feedback")
    con.execute("CREATE OR REPLACE TEMP TABLE _labels AS SELECT request_id, idx, label FROM "
                "feedback")
    labels = arrow(con.sql(f"WITH {_records(win, None, _classes(classes, positive))}, "
                           f"{_labelled(classes, positive)} {_label_sql()}"))
    slices = _slices(con, win, types, classes, positive, slice_cols) if slice_cols else None
    columns = {"sample": _by_row(rows, samples, "sample"), **_cells_by_row(rows, labels)}
    lists = ["sample", *_CELLS]
    groups: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(int(row["w"]), []).append(i)
    # each window's and version's figures (sorting millions of probabilities for ROC AUC is
    # numpy's, outside the GIL): a thread per core
    jobs: dict[tuple[int, str | None], Any] = {}
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        for w, members in groups.items():
            for i in members:
                version = rows[i]["version"]
                jobs[(w, version)] = pool.submit(
                    _figure, [rows[i]], {c: [columns[c][i]] for c in lists}, lat[(w, version)],
                    field, features, sample_rows, seed, cfg)
            if len(members) > 1:
                jobs[(w, None)] = pool.submit(
                    _figure, [rows[i] for i in members],
                    {c: [columns[c][i] for i in members] for c in lists}, lat[(w, None)], field,
                    features, sample_rows, seed, cfg)
    out: dict[int, dict] = {}
    for w, members in groups.items():
        entry: dict[str, Any] = {"versions": {}}
        for i in members:
            entry["versions"][rows[i]["version"]] = jobs[(w, rows[i]["version"])].result()
        # one version: the window's figures are that version's
        entry["all"] = (jobs[(w, None)].result() if len(members) > 1 else
                        dict(entry["versions"][rows[members[0]]["version"]]))
        for version, fig in entry["versions"].items():
            fig["versions"] = [version]
            fig["performance_by_version"] = ({version: fig["performance_full"]}
                                             if fig["labels"] >= cfg.min_labels else {})
        entry["all"]["versions"] = sorted(entry["versions"])
        entry["all"]["performance_by_version"] = {
            v: f["performance_full"] for v, f in sorted(entry["versions"].items())
            if f["labels"] >= cfg.min_labels}
        if slices is not None:
            part = slices[slices["w"] == w]
            entry["all"]["slice_frame"] = part
            for version, fig in entry["versions"].items():
                fig["slice_frame"] = part[part["version"] == version]
        out[w] = entry
    return out


def _by_row(rows: list[dict], table: Any, column: str) -> list:
    """``column`` of ``table`` (lists by w and version) beside each of ``rows``; null where
    ``table`` has no such group."""
    import pyarrow as pa

    at = {(w, v): i for i, (w, v) in enumerate(zip(table.column("w").to_pylist(),
                                                   table.column("version").to_pylist(),
                                                   strict=True))}
    values = table.column(column)
    none = pa.scalar(None, values.type)
    return [values[at[key]] if (key := (r["w"], r["version"])) in at else none for r in rows]


def _cells_by_row(rows: list[dict], labels: Any) -> dict[str, list]:
    """The labelled figures of :func:`_label_sql` beside each row of the figures (``rows``
    gain labelled_all and correct_all; the cells' lists are returned, one per row)."""
    for row, all_, correct in zip(rows, _by_row(rows, labels, "labelled_all"),
                                  _by_row(rows, labels, "correct_all"), strict=True):
        row.update(labelled_all=all_.as_py() or 0, correct_all=correct.as_py() or 0)
    return {c: _by_row(rows, labels, c) for c in _CELLS}


def _figure(rows: list[dict], lists: dict[str, list], lat: dict, field: dict[str, str],
            features: list[str], sample_rows: int, seed: int, cfg: MonitorConfig) -> dict:
    """The figures of one window (or one version in it) from its versions' rows."""
    def total(key: str) -> Any:
        return sum(r[key] or 0 for r in rows)

    records = int(total("records"))
    fig: dict[str, Any] = {"requests": int(total("requests")), "records": records,
                           "latency_ms": {"p50": float(lat["lat"][0]),
                                          "p99": float(lat["lat"][1])}}
    missing = {c: records - int(total(f"c{i}")) for i, c in enumerate(features)}
    fig["missing_rate"] = {c: float(m / records) for c, m in missing.items()}
    fig["missing_counts"] = missing
    X = _sample([v.values for v in lists["sample"]], sample_rows)
    X = pd.DataFrame(columns=features) if X is None else \
        X[[field[c] for c in features]].set_axis(features, axis=1)
    fig["X"] = X.reset_index(drop=True)
    fig["sample"] = ({"rows": int(len(X)), "of": records, "seed": seed}
                     if len(X) < records else None)
    shares: dict[str, int] = {}
    for r in rows:
        found = r["shares"] or []  # an arrow map: (key, count) pairs
        for k, v in (found.items() if isinstance(found, dict) else found):
            shares[str(k)] = shares.get(str(k), 0) + v
    count = sum(shares.values())
    ordered = sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))
    fig["predicted_share"] = pd.Series({k: v / count for k, v in ordered}, dtype=float)
    n_p = total("pcount")
    fig["mean_positive_probability"] = float(total("psum") / n_p) if n_p else float("nan")
    fig["invalid_predictions"] = int(total("invalid"))
    cells = {c: np.concatenate([_values(v) for v in lists[c]]) for c in _CELLS}
    fig["labels"] = int(sum(len(v) for v in cells.values()))
    fig["performance_full"] = _performance(cells) if fig["labels"] else None
    fig["performance"] = fig["performance_full"] if fig["labels"] >= cfg.min_labels else None
    fig["request_latency"] = lat["rlat"]
    fig["request_latency_sum"] = float(total("rsum"))
    fig["labelled_all"] = int(total("labelled_all"))
    fig["correct_all"] = int(total("correct_all"))
    return fig


def _slices(con: Any, win: _Windows, types: dict[str, str], classes: list[str], positive: str,
            columns: list[str]) -> pd.DataFrame:
    """The labelled records (valid or not) with the slice columns, for the slice-gap target."""
    wanted = {c: types[c] for c in columns}
    field = fields(columns)
    cols = ", ".join(f"x.{_ident(field[c])} AS {_ident(field[c])}" for c in columns)
    return con.execute(f"WITH {_records(win, wanted, _classes(classes, positive))}, "
                       f"{_labelled(classes, positive)} "
                       f"SELECT w, version, prediction, label, {cols} FROM e "
                       "ORDER BY ts, request_id, idx").df().rename(
                           columns={field[c]: c for c in columns})


def grade_targets(out: dict, fig: dict, errors: pd.DataFrame | None, cfg: MonitorConfig,
                  positive: str, grade: Any) -> None:
    """:func:`loopline.monitoring.targets.grade_figures` from a window's figures."""
    gap = cfg.targets.slice_gap

    def gaps() -> dict:
        part = fig["slice_frame"].reset_index(drop=True)
        inputs = part[list(gap.columns)].copy()
        for c in gap.columns:  # a column with gaps in the window is float in the frame path
            if fig["missing_counts"].get(c) and inputs[c].dtype.kind in "iu":
                inputs[c] = inputs[c].astype(float)
        return tg.slice_gaps(part, inputs, gap.columns, gap.metric, positive, gap.min_records)

    tg.grade_figures(
        out, cfg.targets, grade,
        latency=(float(fig["request_latency"][0]), float(fig["request_latency"][1]))
        if fig["requests"] else None,
        served=fig["requests"], errors=errors, min_requests=cfg.min_requests,
        labelled=fig["labelled_all"], correct=fig["correct_all"], records=fig["records"],
        compute_ms=fig["request_latency_sum"], gaps=gaps)


def run(source: Any, reference: pd.DataFrame, *, numeric: list[str], categorical: list[str],
        classes: list[str], positive: str, target: str, cfg: MonitorConfig,
        until: float | None = None, size: float | None = None,
        sample_rows: int = SAMPLE_ROWS, seed: int = SEED) -> tuple[dict, pd.DataFrame | None]:
    """The document of :func:`loopline.monitoring.monitor.run` from ``source`` (an open
    :class:`loopline.serving.log_store.LogSource`), and the latest window's drift sample
    (its features, for the HTML report; None without data)."""
    until = time.time() if until is None else until
    size = cfg.window_seconds if size is None else size
    span = cfg.windows * size
    # a store's labels and errors are fetched while the records' figures are computed
    with source.window(since=until - span, until=until, columns=COLUMNS,
                       defer=("feedback", "errors")) as log:
        win = _Windows(until, size, cfg.windows, **layouts(log.con, log.layouts))
        figs = window_figures(log, win, reference, numeric, categorical, classes, positive,
                              cfg, sample_rows=sample_rows, seed=seed)
        errors = log.request_errors()  # a store's from the files the window fetched

    def report(k: int, start: float, end: float, failed: pd.DataFrame | None,
               balance: dict[str, float]) -> dict | None:
        entry = figs.get(cfg.windows - k)
        if entry is None:
            return None
        return _report(entry["all"], entry["versions"], reference, numeric, categorical,
                       classes, positive, balance, cfg, failed)

    doc = mon.document(report, reference, target=target, cfg=cfg, until=until, size=size,
                       errors=errors)
    latest = None
    if doc["latest_window"]:
        k = round((until - doc["latest_window"]["end"]) / size) + 1
        entry = figs.get(cfg.windows - k)
        latest = entry["all"]["X"] if entry else None
    return doc, latest


def _report(fig: dict, versions: dict[str, dict], reference: pd.DataFrame, numeric: list[str],
            categorical: list[str], classes: list[str], positive: str,
            balance: dict[str, float], cfg: MonitorConfig, errors: pd.DataFrame | None, *,
            by_version: bool = True) -> dict:
    def targets(out: dict, grade: Any) -> None:
        grade_targets(out, fig, errors, cfg, positive, grade)

    def version_report(version: str) -> dict:
        return _report(versions[version], {}, reference, numeric, categorical, classes,
                       positive, balance, cfg, None, by_version=False)

    return mon.assemble(fig, reference, numeric, categorical, classes, balance, cfg,
                        errors=errors, targets=targets,
                        version_report=version_report if by_version else None)
