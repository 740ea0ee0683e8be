"""The shipper: a replica's inference log, moved in batches to the object store.

One per replica: the service's worker processes share one SQLite log, and the one holding an
``fcntl.flock`` on the file beside it (``<log>.ship.lock``) ships; the others retry the lock
each tick, so a worker that dies hands the job on. In the background, every
``every_seconds`` (or sooner once ``max_rows`` rows wait) it reads up to ``max_rows`` rows of
each table (requests, feedback, errors) in rowid order, writes them as Parquet partitions
(:mod:`loopline.serving.log_store`; the requests as typed records, one row per record,
:mod:`loopline.serving.log_records`, so no reader parses their JSON again), and only once
every file is written deletes those rows and advances the batch number (``seq``), in one transaction of the log.

A crash between the upload and the delete ships the same rows again under the same ``seq``,
so the same file names: the upload overwrites itself, and the reader keeps one row per
request anyway. The ``seq`` lives in the log (table ``ship_state``) and starts from the
clock in milliseconds, so a replica whose log was lost never overwrites its earlier files.
An unreachable store never touches a request: rows wait in the log, the backlog is reported
(``on_backlog``, the ``loopline_log_backlog_rows`` gauge) and an error is logged once it
passes ``alert_backlog_rows``. ``close()`` (SIGTERM) ships what is left, within a deadline.
Once a minute, with nothing waiting, it merges its own files of every hour that ended
``compact_after`` seconds ago into one (:meth:`Shipper.compact`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loopline.core.layout import SHIP_LOCK_SUFFIX
from loopline.serving.log_store import SHIPPED_AS, TABLES, Store, configured, shipped_table, write_parquet

logger = logging.getLogger("loopline.serving")

REPLICA_ENV = "LOOPLINE_REPLICA"
_STATE = ("CREATE TABLE IF NOT EXISTS ship_state (replica TEXT PRIMARY KEY, seq INTEGER NOT NULL);"
          "CREATE TABLE IF NOT EXISTS ship_parts (dir TEXT PRIMARY KEY)")
_HOUR = re.compile(r"date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})$")
_VERSION_COLUMN = {"requests": 2, "feedback": None, "errors": 3}  # after rowid is dropped
_TS_COLUMN = {"requests": 1, "feedback": 3, "errors": 0}


def replica_id(configured_name: str | None = None, port: int | None = None) -> str:
    """``LOOPLINE_REPLICA``, else ``serve.replica``, else ``<hostname>-<port>`` (stable
    across restarts, distinct per container and per port), made safe for a file name."""
    name = os.environ.get(REPLICA_ENV) or configured_name or \
        f"{socket.gethostname()}-{port if port is not None else 0}"
    return re.sub(r"[^A-Za-z0-9._-]", "-", name).strip(".-") or "replica"


class Shipper:
    """Ships the SQLite log at ``log_path`` to ``store`` in the background (see module doc)."""

    def __init__(self, log_path: str | Path, store: Store, *, artifact: str, replica: str,
                 every_seconds: float = 5.0, max_rows: int = 10_000,
                 alert_backlog_rows: int = 1_000_000,
                 on_backlog: Callable[[int, bool], None] | None = None,
                 compact_every: float = 60.0, compact_after: float = 600.0,
                 start: bool = True) -> None:
        from loopline.serving.inference_log import connect

        self.log_path, self.store = Path(log_path), store
        self.artifact, self.replica = artifact, replica
        self.every_seconds, self.max_rows = every_seconds, max_rows
        self.alert_backlog_rows = alert_backlog_rows
        self._on_backlog = on_backlog or (lambda rows, alert: None)
        self._conn = connect(self.log_path)
        deadline = time.monotonic() + 30.0
        while True:  # workers start together: creating a table may meet a lock
            try:
                self._conn.executescript(_STATE)
                break
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._fs = store.filesystem()
        self._lock_file = open(str(self.log_path) + SHIP_LOCK_SUFFIX, "a+")  # noqa: SIM115
        self.leader = False
        self.backlog = 0
        self.alerting = False
        self.shipped = 0        # rows deleted from the log after a confirmed upload
        self.failures = 0
        self._last = time.monotonic()
        self._failing_since: float | None = None
        self._warned: float | None = None
        self.compact_every, self.compact_after = compact_every, compact_after
        self._compacted = time.monotonic()
        self._stop = threading.Event()
        self._io = threading.Lock()  # one batch at a time (the thread, close, tests)
        self._thread = threading.Thread(target=self._run, name="loopline-log-shipper", daemon=True)
        if start:
            self._thread.start()

    # ------------------------------------------------------------------ election

    def try_lead(self) -> bool:
        """Take the replica's ship lock if no other process holds it."""
        if not self.leader:
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False
            self.leader = True
            if not self._stop.is_set():
                logger.info("process %d ships replica %s to %s", os.getpid(), self.replica,
                            self.store.url)
        return True

    def _release(self) -> None:
        if self.leader:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self.leader = False

    # --------------------------------------------------------------- the loop

    def _run(self) -> None:
        tick = min(1.0, self.every_seconds)
        while not self._stop.wait(tick):
            if not self.try_lead():
                continue
            try:
                backlog = self.count()
                due = time.monotonic() - self._last >= self.every_seconds
                if backlog and (due or backlog >= self.max_rows):
                    self.ship()
                    self._last = time.monotonic()
                    backlog = self.count()
                    if self._failing_since is not None:
                        logger.warning("log store %s: reachable again, the backlog shipped",
                                       self.store.url)
                        self._failing_since = self._warned = None
                self._report(backlog)
                if backlog == 0 and time.monotonic() - self._compacted >= self.compact_every:
                    self._compacted = time.monotonic()
                    self.compact()
            except Exception as err:  # the store is down, or a bug: rows stay in the log
                self.failures += 1
                now = self._last = time.monotonic()
                self._failing_since = self._failing_since or now
                waiting = self._count_safely()
                if self._warned is None or now - self._warned >= 60.0:  # once a minute
                    self._warned = now
                    logger.warning("log store %s: shipping failed for %.0f s, %d rows wait in "
                                   "%s (%s)", self.store.url, now - self._failing_since,
                                   waiting, self.log_path,
                                   (str(err).strip().splitlines() or [type(err).__name__])[0])
                self._report(waiting)

    def _count_safely(self) -> int:
        try:
            return self.count()
        except sqlite3.Error:
            return self.backlog

    def _report(self, backlog: int) -> None:
        self.backlog = backlog
        alert = backlog > self.alert_backlog_rows
        if alert and not self.alerting:
            logger.error("log store %s: %d rows not shipped (alert past %d); the service keeps "
                         "answering and logging locally in %s", self.store.url, backlog,
                         self.alert_backlog_rows, self.log_path)
        elif self.alerting and not alert:
            logger.warning("log store %s: backlog back to %d rows", self.store.url, backlog)
        self.alerting = alert
        try:
            self._on_backlog(backlog, alert)
        except Exception:
            logger.exception("could not report the log backlog")

    def count(self) -> int:
        """Rows in the log not yet shipped (all tables)."""
        return sum(self._conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES)

    # --------------------------------------------------------------- shipping

    def ship(self, *, deadline: float | None = None) -> int:
        """Ship batches until the log is empty (or ``deadline``, monotonic); rows shipped.

        Raises whatever the store raised; the rows of a failed batch stay in the log.
        """
        total = 0
        while deadline is None or time.monotonic() < deadline:
            n = self.ship_batch()
            total += n
            if n == 0:
                break
        return total

    def _seq(self) -> int:
        row = self._conn.execute("SELECT seq FROM ship_state WHERE replica = ?",
                                 (self.replica,)).fetchone()
        if row is not None:
            return int(row[0])
        seq = int(time.time() * 1000)  # kept before the first upload, so a retry reuses it
        with self._conn:
            self._conn.execute("INSERT INTO ship_state VALUES (?, ?)", (self.replica, seq))
        return seq

    def ship_batch(self) -> int:
        """Upload one batch (up to ``max_rows`` rows per table) and delete it from the log."""
        with self._io:
            batch = {t: self._conn.execute(f"SELECT rowid, * FROM {t} ORDER BY rowid LIMIT ?",
                                           (self.max_rows,)).fetchall() for t in TABLES}
            if not any(batch.values()):
                return 0
            seq = self._seq()
            written = []
            for table, rows in batch.items():
                for path, part in self._partitions(table, rows, seq).items():
                    write_parquet(self._fs, path, shipped_table(table, part, self.replica))
                    written.append(path)
            with self._conn:  # the upload is confirmed: drop the rows, advance seq, at once
                for table, rows in batch.items():
                    if table == "feedback":  # a newer label may have taken a shipped rowid
                        self._conn.executemany(
                            "DELETE FROM feedback WHERE rowid = ? AND request_id = ? AND "
                            "idx = ? AND label = ? AND ts = ?", rows)
                    elif rows:  # appended only: every rowid up to the last one was read
                        self._conn.execute(f"DELETE FROM {table} WHERE rowid <= ?",
                                           (rows[-1][0],))
                self._conn.execute("INSERT OR REPLACE INTO ship_state VALUES (?, ?)",
                                   (self.replica, seq + 1))
                self._conn.executemany("INSERT OR IGNORE INTO ship_parts VALUES (?)",
                                       [(path.rsplit("/", 1)[0],) for path in written])
            n = sum(len(rows) for rows in batch.values())
            self.shipped += n
            return n

    def _partitions(self, table: str, rows: list[tuple], seq: int) -> dict[str, list[tuple]]:
        """``rows`` (rowid first) without the rowid, grouped by the file they go to."""
        vcol, tcol = _VERSION_COLUMN[table], _TS_COLUMN[table]
        out: dict[str, list[tuple]] = defaultdict(list)
        for row in rows:
            values = row[1:]
            version = values[vcol] if vcol is not None else None
            folder = self.store.partition_dir(SHIPPED_AS[table], self.artifact, version,
                                              values[tcol])
            out[f"{folder}/{self.replica}-{seq:013d}.parquet"].append(values)
        return out

    # --------------------------------------------------------------- compaction

    def compact(self, now: float | None = None) -> int:
        """Merge this replica's files of each hour that ended ``compact_after`` seconds ago
        into one file (a batch every few seconds makes many small ones); files removed.

        The merged file is written before the small ones are deleted, so a reader meanwhile
        sees rows twice and keeps them once (:mod:`loopline.serving.log_store`); a crash
        in between is merged again next time, exact duplicates dropped.
        """
        now = time.time() if now is None else now
        removed = 0
        with self._io:
            for (folder,) in self._conn.execute("SELECT dir FROM ship_parts").fetchall():
                m = _HOUR.search(folder)
                if m is not None:
                    start = datetime.strptime(f"{m[1]} {m[2]}", "%Y-%m-%d %H")
                    if start.replace(tzinfo=UTC).timestamp() + 3600 + self.compact_after > now:
                        continue
                    removed += self._compact_folder(folder)
                with self._conn:
                    self._conn.execute("DELETE FROM ship_parts WHERE dir = ?", (folder,))
        return removed

    def _compact_folder(self, folder: str) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from pyarrow import fs

        infos = self._fs.get_file_info(fs.FileSelector(folder, allow_not_found=True))
        mine = sorted(i.path for i in infos if i.base_name.startswith(f"{self.replica}-")
                      and i.base_name.endswith(".parquet"))
        if len(mine) < 2:
            return 0
        tables = {p: pq.read_table(p, filesystem=self._fs, partitioning=None) for p in mine}
        # files of one schema merge; a batch that brought a new feature, class or type
        # starts another group (rare, so no file is rewritten with columns it lacked)
        groups: dict[Any, list[str]] = defaultdict(list)
        for path, table in tables.items():
            groups[table.schema.remove_metadata()].append(path)
        removed = 0
        for paths in groups.values():
            if len(paths) < 2:
                continue
            table = pa.concat_tables([tables[p] for p in paths])
            names = table.column_names
            merged = table.group_by(names, use_threads=False).aggregate([]).select(names)
            merged = merged.replace_schema_metadata(_merged_metadata([tables[p] for p in paths]))
            seq = self._seq()
            target = f"{folder}/{self.replica}-{seq:013d}.parquet"
            write_parquet(self._fs, target, merged)
            with self._conn:
                self._conn.execute("INSERT OR REPLACE INTO ship_state VALUES (?, ?)",
                                   (self.replica, seq + 1))
            for path in paths:
                if path != target:
                    self._fs.delete_file(path)
            removed += len(paths) - 1
        return removed

    # ---------------------------------------------------------------- shutdown

    def close(self, timeout: float = 20.0) -> None:
        """Stop the loop and ship what the log holds (SIGTERM), within ``timeout`` seconds.

        Every worker does this after closing its own writer: the lock makes them take turns,
        so rows a worker wrote at the last moment are shipped too. Idempotent.
        """
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while not self.try_lead() and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            if self.leader:
                self.ship(deadline=deadline)
        except Exception as err:
            logger.warning("log store %s: could not ship at shutdown, %d rows stay in %s for "
                           "the next start (%s)", self.store.url, self._count_safely(),
                           self.log_path, (str(err).strip().splitlines() or ["?"])[0])
        finally:
            self._release()
            self._lock_file.close()
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()


def _merged_metadata(tables: list[Any]) -> dict | None:
    """The key-value metadata of files merged into one: the records' name maps, united."""
    import orjson

    from loopline.serving.log_records import META_KEY

    metas = [orjson.loads(t.schema.metadata[META_KEY]) for t in tables
             if t.schema.metadata and META_KEY in t.schema.metadata]
    if not metas:
        return tables[0].schema.metadata
    merged: dict[str, dict] = {"columns": {}, "classes": {}}
    for meta in metas:
        for key in merged:
            merged[key].update(meta.get(key, {}))
    return {META_KEY: orjson.dumps(merged)}


def start(spec: dict[str, Any], log_path: str | Path,
          on_backlog: Callable[[int, bool], None] | None = None) -> Shipper | None:
    """The shipper of a service (``spec`` of :mod:`loopline.serving.spec`), or None when no
    store is configured (``LOOPLINE_LOG_STORE``, ``serve.log_store.url``, the DVC remote)."""
    cfg = spec.get("log_store") or {}
    root = spec.get("root")
    store = configured(cfg.get("url"), Path(root) if root else None)
    if store is None:
        return None
    replica = replica_id(cfg.get("replica"), cfg.get("port"))
    logger.info("shipping the inference log %s to %s as replica %s", log_path, store.url, replica)
    return Shipper(log_path, store, artifact=spec["artifact"], replica=replica,
                   every_seconds=float(cfg.get("every_seconds", 5.0)),
                   max_rows=int(cfg.get("max_rows", 10_000)),
                   alert_backlog_rows=int(cfg.get("alert_backlog_rows", 1_000_000)),
                   on_backlog=on_backlog)
