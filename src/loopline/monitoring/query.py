"""``loopline log``: what the model did, record by record, without writing SQL.

The inference log, local or in the object store the replicas ship to
(:func:`loopline.serving.log_store.open_log`), becomes one flat
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

    DuckDB's names ignore case, so every name must differ from the others in more than case:
    an input column named as one of :data:`META` (in any case) is kept as ``input.<name>``,
    and one that equals an earlier column but for case (``age`` after ``Age``) as
    ``<name>_2`` (``_3``…). The table's ``attrs["renamed"]`` maps each such column to the
    input's own name.
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
    inputs.columns, renamed = _distinct(list(inputs.columns))
    table = pd.concat([out, inputs], axis=1)
    table.attrs["renamed"] = renamed
    return table


def _distinct(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """``names`` made distinct from :data:`META` and each other ignoring case (see
    :func:`records_table`), and the renamed ones' own names by their new ones."""
    meta = {m.casefold() for m in META}
    taken = set(meta)
    out, renamed = [], {}
    for name in names:
        new = f"input.{name}" if name.casefold() in meta else name
        base, k = new, 2
        while new.casefold() in taken:
            new, k = f"{base}_{k}", k + 1
        taken.add(new.casefold())
        out.append(new)
        if new != name:
            renamed[new] = name
    return out, renamed


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


def run(log: Any, q: Query, *, now: float | None = None) -> Any:
    """The answer to ``q`` over the inference log at ``log`` (a path, a store URL or
    :class:`loopline.serving.log_store.Store`), as a pandas DataFrame."""
    import duckdb

    from loopline.serving.log_store import open_log

    if q.sql and (q.where or q.by or q.columns or q.wrong or q.labelled or q.version):
        raise LooplineError("--sql is the whole query: leave out --where, --by, --columns, "
                            "--wrong, --labelled and --version (write them in the SQL)")
    if q.limit is not None and q.limit < 1:
        raise LooplineError(f"--limit must be at least 1, got {q.limit}")
    now = _time.time() if now is None else now
    source = open_log(log)
    since = parse_time(q.since, "--since", now) if q.since else None
    until = parse_time(q.until, "--until", now) if q.until else None
    try:
        records = records_table(source.predictions(since=since, until=until, version=q.version))
        errors = source.request_errors(since=since, until=until)
    except LooplineError:
        raise
    except Exception as err:  # sqlite3.DatabaseError and friends: the file, not a bug
        raise LooplineError(f"cannot read the inference log {source.where}: {err}") from None
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
            answer = con.execute(sql, args).df()
            answer.attrs["renamed"] = records.attrs.get("renamed", {})
            return answer
        except duckdb.Error as err:
            what = "--sql" if q.sql else ("--where" if q.where else "the query")
            first = str(err).strip().splitlines()[0]
            raise LooplineError(f"{what}: {first}") from None
    finally:
        con.close()
