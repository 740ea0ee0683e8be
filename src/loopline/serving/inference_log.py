"""The inference log: every prediction and every feedback label, in SQLite.

This module is the file: its tables (:data:`SCHEMA`, version :data:`SCHEMA_VERSION` in
``PRAGMA user_version``), :func:`connect`, and the readers the monitor uses. The service
writes it through :class:`loopline.serving.log_writer.InferenceLog` (buffered, off the
response path, spooled when the log cannot take a write); it is checked once at start-up
(:mod:`loopline.serving.log_check`).

The file is SQLite in WAL mode, so several server processes append to it at once and
``loopline monitor`` reads it while they do. One row per request keeps the write cheap (a
batch of 1,000 rows is three JSON blobs, not 1,000 inserts); :func:`read_predictions`
turns it into one row per record. Tables:

- ``requests(request_id, ts, model_version, n, inputs, predictions, probabilities,
  classes, latency_ms, shadow_version, shadow_predictions, shadow_probabilities)``:
  ``inputs`` is JSON, a list of records (``/predict``) or an object of columns
  (``/predict_batch``); ``predictions`` one class per record; ``probabilities`` one list
  per record in the order of ``classes``.
- ``feedback(request_id, idx, label, ts)``: delayed ground truth for record ``idx`` of a
  request; the latest label wins.
- ``errors(ts, route, status, model_version)``: the request errors, requests to an
  inference route answered 4xx or 5xx (a payload that failed the input contract, a body over
  the limit, a bug; :mod:`loopline.serving.request_errors`; 499 for a client gone mid-body),
  so the monitor can report the error rate beside the request count.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    model_version TEXT NOT NULL,
    n INTEGER NOT NULL,
    inputs TEXT NOT NULL,
    predictions TEXT NOT NULL,
    probabilities TEXT NOT NULL,
    classes TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    shadow_version TEXT,
    shadow_predictions TEXT,
    shadow_probabilities TEXT
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    label TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (request_id, idx)
);
CREATE TABLE IF NOT EXISTS errors (
    ts REAL NOT NULL,
    route TEXT NOT NULL,
    status INTEGER NOT NULL,
    model_version TEXT
);
CREATE INDEX IF NOT EXISTS errors_ts ON errors (ts);
"""

SCHEMA_VERSION = 1  # PRAGMA user_version of a log with the tables above
INSERTS = {"requests": "INSERT OR REPLACE INTO requests VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
           "feedback": "INSERT OR REPLACE INTO feedback VALUES (?,?,?,?)",
           "errors": "INSERT INTO errors VALUES (?,?,?,?)"}
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
INSERT_ROWS = 64  # rows per INSERT of insert() (x 12 columns: under SQLite's oldest limit, 999)


def insert(conn: sqlite3.Connection, kind: str, rows: Sequence[Sequence[Any]]) -> None:
    """Add ``rows`` to table ``kind`` of :data:`INSERTS`, :data:`INSERT_ROWS` per statement.

    The same rows, in the same order, under the same conflict rule as
    ``executemany(INSERTS[kind], rows)``, for a little less CPU, and above all one release
    of the GIL per statement instead of one per row: in a server, the writer thread takes
    the GIL back from the request handlers once per 64 rows, not once per row.
    """
    for start in range(0, len(rows), INSERT_ROWS):
        chunk = rows[start:start + INSERT_ROWS]
        conn.execute(_insert_sql(kind, len(chunk)), [v for row in chunk for v in row])


@functools.cache
def _insert_sql(kind: str, n: int) -> str:
    """The INSERT of ``n`` rows into table ``kind``."""
    one = INSERTS[kind]
    values = one[one.index("VALUES ") + len("VALUES "):]
    return one + ("," + values) * (n - 1)


def dumps(obj: Any) -> str:
    """JSON text; what orjson refuses (e.g. an integer beyond 64 bits) goes through json."""
    try:
        return orjson.dumps(obj, option=_NUMPY).decode()
    except TypeError:
        import json

        return json.dumps(obj, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the log, creating the file and its tables unless ``readonly``."""
    path = Path(path)
    if readonly:
        if not path.is_file():
            raise FileNotFoundError(f"no inference log at {path}")
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0,
                                   check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
        except sqlite3.DatabaseError as err:
            raise _unreadable(path, err) from err
        return conn
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
    # Several server processes start at once: switching to WAL and creating the tables
    # take a lock that SQLite's busy timeout does not always wait for, so retry.
    deadline = time.monotonic() + 30.0
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            return conn
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.05)


def _ts_range(since: float | None, until: float | None) -> tuple[str, list[float]]:
    """A ``WHERE`` clause (or "") for ``since <= ts < until``, and its arguments."""
    where, args = [], []
    if since is not None:
        where.append("ts >= ?")
        args.append(since)
    if until is not None:
        where.append("ts < ?")
        args.append(until)
    return (" WHERE " + " AND ".join(where) if where else ""), args


def read_predictions(path: str | Path, *, since: float | None = None,
                     until: float | None = None, with_feedback: bool = True) -> Any:
    """The log as a pandas DataFrame with one row per record, joined to feedback labels.

    Columns: request_id, idx, ts, model_version, inputs (dict), prediction,
    probabilities (dict class → p), latency_ms, shadow_version, shadow_prediction,
    shadow_probabilities (dict or None), and label, label_ts (null until feedback).
    """

    where, args = _ts_range(since, until)
    conn = connect(path, readonly=True)
    try:
        requests = conn.execute(f"SELECT * FROM requests{where} ORDER BY ts, request_id",
                                args).fetchall()
        labels = {}
        if with_feedback:
            labels = {(r, i): (lab, t) for r, i, lab, t in
                      conn.execute("SELECT request_id, idx, label, ts FROM feedback")}
    except sqlite3.DatabaseError as err:
        raise _unreadable(path, err) from err
    finally:
        conn.close()
    return frame(requests, labels)


COLUMNS = ["request_id", "idx", "ts", "model_version", "inputs", "prediction", "probabilities",
           "latency_ms", "shadow_version", "shadow_prediction", "shadow_probabilities", "label",
           "label_ts"]


def frame(requests: Iterable[Sequence], labels: Mapping[tuple[str, int], tuple[str, float]]) -> Any:
    """The frame of :func:`read_predictions` from rows of ``requests`` (its columns, in order)
    and ``labels`` by ``(request_id, idx)``: ``(label, ts)``; the object store's reader
    (:mod:`loopline.serving.log_store`) builds the same frame from its Parquet rows."""
    return records_frame(json_records(requests), labels)


def json_records(requests: Iterable[Sequence]) -> Iterable[dict]:
    """The records of rows of ``requests`` (JSON columns), as dicts of the frame's columns
    but the label's."""
    loads = orjson.loads
    for (rid, ts, version, n, inputs, preds, probs, classes, latency,
         s_version, s_preds, s_probs) in requests:
        inputs, preds, probs, classes = loads(inputs), loads(preds), loads(probs), loads(classes)
        if isinstance(inputs, dict):  # columns
            records = [{k: v[i] for k, v in inputs.items()} for i in range(n)]
        else:
            records = inputs
        s_preds = loads(s_preds) if s_preds else None
        s_probs = loads(s_probs) if s_probs else None
        for i in range(n):
            yield {
                "request_id": rid, "idx": i, "ts": ts, "model_version": version,
                "inputs": records[i], "prediction": preds[i],
                "probabilities": dict(zip(classes, probs[i], strict=True)), "latency_ms": latency,
                "shadow_version": s_version,
                "shadow_prediction": s_preds[i] if s_preds else None,
                "shadow_probabilities": (dict(zip(s_probs["classes"], s_probs["p"][i], strict=True))
                                         if s_probs else None)}


def records_frame(records: Iterable[dict],
                  labels: Mapping[tuple[str, int], tuple[str, float]]) -> Any:
    """The frame of :func:`read_predictions` from records (dicts of :func:`json_records`),
    each given its label."""
    import pandas as pd

    out = []
    for rec in records:
        rec["label"], rec["label_ts"] = labels.get((rec["request_id"], rec["idx"]), (None, None))
        out.append(rec)
    return pd.DataFrame(out, columns=COLUMNS)


def read_request_errors(path: str | Path, *, since: float | None = None,
                        until: float | None = None) -> Any:
    """The request errors: a DataFrame of ts, route, status, model_version.

    None for a log written before request errors were recorded (unknown, not zero).
    """
    import pandas as pd

    columns = ["ts", "route", "status", "model_version"]
    where, args = _ts_range(since, until)
    conn = connect(path, readonly=True)
    try:
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM errors{where} ORDER BY ts",
                            args).fetchall()
    except sqlite3.DatabaseError as err:
        if "no such table" not in str(err):
            raise _unreadable(path, err) from err
        return None
    finally:
        conn.close()
    return pd.DataFrame(rows, columns=columns)


def _unreadable(path: str | Path, err: Exception) -> Exception:
    from loopline.core.errors import LooplineError

    return LooplineError(f"inference log {path} cannot be read ({err}): move it aside, or "
                         "start the service with `loopline serve --log-reset`")


def features(df: Any, columns: list[str] | None = None) -> Any:
    """The logged inputs of :func:`read_predictions` as a DataFrame (one column per feature;
    with ``columns``, exactly those, in that order, missing ones empty)."""
    import pandas as pd

    out = pd.DataFrame(list(df["inputs"]), index=df.index)
    return out if columns is None else out.reindex(columns=columns)


def __getattr__(name: str) -> Any:
    """``InferenceLog`` lived here: the writer is :mod:`loopline.serving.log_writer` now."""
    if name == "InferenceLog":
        from loopline.serving.log_writer import InferenceLog

        return InferenceLog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
