"""``loopline log``: what the model did, record by record, without writing SQL.

The inference log (:func:`loopline.serving.inference_log.read_predictions`) becomes one flat
table, ``records``: one row per predicted record with ``time`` (UTC), ``request_id``, ``idx``,
``version``, ``prediction``, ``label`` (null until feedback), ``correct`` (null until
feedback), ``confidence`` (the probability of the predicted class), ``latency_ms``, then every
input column under the name the caller sent. The filters (time window, version, labelled,
wrong, a ``--where`` expression) and ``--by`` summaries are SQL run by DuckDB over that table,
and ``--sql`` runs any query of the user's own over it (``records``) and the request errors
(``errors``). DuckDB, not pandas' ``query()``: its SQL is what users already know, quotes any
column name (``"ratio/total"``), and reports a bad expression by name.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loopline.core.errors import LooplineError
from loopline.core.names import duration_seconds

META = ["time", "request_id", "idx", "version", "prediction", "label", "correct",
        "confidence", "latency_ms"]


@dataclass
class Query:
    """What ``loopline log`` was asked. Every field is optional; empty means everything."""

    since: str | None = None          # a duration back from now (24h) or an ISO date/time
    until: str | None = None
    version: str | None = None
    where: str | None = None          # a SQL boolean expression over the columns of ``records``
    wrong: bool = False               # labelled records whose prediction was not the label
    labelled: bool = False
    columns: list[str] = field(default_factory=list)
    by: list[str] = field(default_factory=list)
    limit: int | None = None
    sql: str | None = None


def parse_time(text: str, what: str, now: float | None = None) -> float:
    """Unix time of ``text``: a duration back from ``now`` (``90m``, ``24h``, ``7d``) or an
    ISO 8601 date or date-time (UTC unless it says otherwise)."""
    now = _time.time() if now is None else now
    try:
        return now - duration_seconds(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise LooplineError(f"{what} {text!r} is neither a duration (e.g. 24h, 7d) nor an ISO "
                            "date (e.g. 2026-11-30 or 2026-11-30T12:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def records_table(predictions: Any) -> Any:
    """The flat ``records`` table of a :func:`read_predictions` frame (see the module doc).

    An input column whose name is one of :data:`META` is kept as ``input.<name>``, so the
    table has each name once.
    """
    import pandas as pd

    from loopline.serving.inference_log import features

    df = predictions
    if df.empty:
        return pd.DataFrame(columns=META)
    labelled = df["label"].notna()
    pred = df["prediction"].astype(str)
    conf = [p.get(str(k), p.get(k)) if isinstance(p, dict) else None
            for p, k in zip(df["probabilities"], df["prediction"], strict=True)]
    out = pd.DataFrame({
        "time": pd.to_datetime(df["ts"], unit="s", utc=True),
        "request_id": df["request_id"], "idx": df["idx"], "version": df["model_version"],
        "prediction": pred, "label": df["label"],
        "correct": (pred == df["label"].astype(str)).where(labelled, None).astype("boolean"),
        "confidence": pd.to_numeric(pd.Series(conf, index=df.index), errors="coerce"),
        "latency_ms": df["latency_ms"]})
    inputs = features(df)
    inputs.columns = [f"input.{c}" if c in META else c for c in inputs.columns]
    return pd.concat([out, inputs], axis=1)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _select(q: Query, names: list[str], now: float) -> tuple[str, list]:
    """The SQL of the filters and shape of ``q`` over ``records``, and its parameters."""
    where, args = [], []
    if q.since:
        where.append("time >= to_timestamp(?)")
        args.append(parse_time(q.since, "--since", now))
    if q.until:
        where.append("time < to_timestamp(?)")
        args.append(parse_time(q.until, "--until", now))
    if q.version:
        where.append("version = ?")
        args.append(q.version)
    if q.labelled or q.wrong:
        where.append("label IS NOT NULL")
    if q.wrong:
        where.append("NOT correct")
    if q.where:
        where.append(f"({q.where})")
    cond = (" WHERE " + " AND ".join(where)) if where else ""
    for col in [*q.columns, *q.by]:
        if col not in names:
            raise LooplineError(f"no column {col!r} in the log's records (columns: "
                                f"{', '.join(names)})")
    if q.by:
        keys = ", ".join(_quote(c) for c in q.by)
        sql = (f"SELECT {keys}, count(*) AS records, count(label) AS labelled, "
               "count(*) FILTER (WHERE NOT correct) AS wrong, "
               "round(avg(CASE WHEN correct THEN 1.0 WHEN NOT correct THEN 0.0 END), 4) "
               "AS accuracy, round(avg(confidence), 4) AS mean_confidence "
               f"FROM records{cond} GROUP BY ALL ORDER BY records DESC, {keys}")
    else:
        cols = ", ".join(_quote(c) for c in q.columns) if q.columns else "*"
        sql = f"SELECT {cols} FROM records{cond} ORDER BY time, request_id, idx"
    if q.limit is not None:
        sql += f" LIMIT {int(q.limit)}"
    return sql, args


def run(log: Path, q: Query, *, now: float | None = None) -> Any:
    """The answer to ``q`` over the inference log at ``log``, as a pandas DataFrame."""
    import duckdb

    from loopline.serving.inference_log import read_predictions, read_request_errors

    if q.sql and (q.where or q.by or q.columns or q.wrong or q.labelled or q.version):
        raise LooplineError("--sql is the whole query: leave out --where, --by, --columns, "
                            "--wrong, --labelled and --version (write them in the SQL)")
    if q.limit is not None and q.limit < 1:
        raise LooplineError(f"--limit must be at least 1, got {q.limit}")
    now = _time.time() if now is None else now
    if not log.is_file():
        raise LooplineError(f"no inference log at {log} (start the service, or pass --log)")
    since = parse_time(q.since, "--since", now) if q.since else None
    until = parse_time(q.until, "--until", now) if q.until else None
    try:
        records = records_table(read_predictions(log, since=since, until=until))
        errors = read_request_errors(log, since=since, until=until)
    except Exception as err:  # sqlite3.DatabaseError and friends: the file, not a bug
        raise LooplineError(f"cannot read the inference log {log}: {err}") from None
    con = duckdb.connect()
    try:
        con.register("records", records)
        if errors is not None:
            con.register("errors", errors)
        if q.sql:
            sql, args = q.sql, []
        else:
            sql, args = _select(q, list(records.columns), now)
        try:
            return con.execute(sql, args).df()
        except duckdb.Error as err:
            what = "--sql" if q.sql else ("--where" if q.where else "the query")
            first = str(err).strip().splitlines()[0]
            raise LooplineError(f"{what}: {first}") from None
    finally:
        con.close()
