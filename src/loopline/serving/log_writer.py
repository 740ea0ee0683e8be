"""The inference log's writer: buffered, off the response path, never losing a row quietly.

The response path only appends a tuple to an in-memory deque (no lock, no I/O). A writer
thread per server process wakes every ``flush_interval`` seconds (or once ``flush_rows``
records wait), turns the batch into rows and commits it to the log
(:mod:`loopline.serving.inference_log`) in one transaction; a shadow model, when
configured, is scored there too (one onnxruntime run per request), so it costs the response
nothing. On close the writer drains what is left, so a graceful shutdown loses nothing.

A write the log cannot take is never dropped: a locked file is retried for a while; then,
or at once for a damaged file or a full or read-only disk, the rows go to the spool beside
the log (:mod:`loopline.serving.spool`, fsynced, replayed at the next start) and the log
is tried again every :data:`RETRY_LOG` seconds; when even the spool cannot be written the
rows stay queued and :attr:`InferenceLog.accepting` turns false, so the service stops
answering what it could not keep. A log moved or deleted while served is made again where
it is looked for.
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loopline.serving import spool
from loopline.serving.inference_log import INSERTS, connect, dumps, insert

logger = logging.getLogger("loopline.serving")

RETRY_LOG = 10.0  # seconds between tries of a log that failed (rows go to the spool meanwhile)


def request_id() -> str:
    """A new request id: a UUIDv7 (RFC 9562) as 32 hex digits, time-ordered.

    The log's primary key is the request id: ids that grow with time are appended at the end
    of its index, where random ones (uuid4) land all over it, so that each write touches
    (and copies to the WAL) a page per row, a cost that grows with the log (about 4x the
    writer's CPU at 500,000 rows; bench/inference_log.py). 48 bits of milliseconds, then 74
    random bits (``os.urandom``): unique across replicas, not guessable; the last 12 hex
    digits are random (:mod:`loopline.serving.split` draws from them).
    """
    rand = int.from_bytes(os.urandom(10))
    value = ((time.time_ns() // 1_000_000) & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 \
        | (rand >> 68) << 64 | 0b10 << 62 | rand & 0x3FFF_FFFF_FFFF_FFFF
    return f"{value:032x}"


def _identity(path: Path) -> tuple[int, int] | None:
    """The file at ``path`` (device, inode), None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class InferenceLog:
    """Buffered, non-blocking appends to the inference log (one writer thread).

    Args:
        path: the SQLite file.
        flush_interval: seconds between writes.
        flush_rows: write sooner once this many records wait.
        shadow: returns the shadow version (a ``ServedVersion``, or None) at write time.
        count: called with ``("spooled" | "lost" | "failed", n)`` as rows go to the spool,
            are lost, or a write fails (the service's metrics).
        locked_for: seconds a locked log is retried before its rows go to the spool.
    """

    def __init__(self, path: str | Path, *, flush_interval: float = 0.2, flush_rows: int = 2000,
                 shadow: Callable[[], Any] | None = None,
                 count: Callable[[str, int], None] | None = None,
                 locked_for: float = 10.0) -> None:
        self.path = Path(path)
        self.flush_interval = flush_interval
        self.flush_rows = flush_rows
        self.locked_for = locked_for
        self._shadow = shadow or (lambda: None)
        self._count = count or (lambda outcome, n: None)
        self._predictions: deque = deque()
        self._feedback: deque = deque()
        self._request_errors: deque = deque()
        self._held: dict[str, list] = {"requests": [], "feedback": [], "errors": []}
        self._waiting = 0
        self._inflight = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._conn: sqlite3.Connection | None = None
        self._spool_until = 0.0  # rows go straight to the spool until then
        self.written = 0
        self.write_failures = 0
        self.spooled = 0
        self.lost = 0
        self._identity: tuple[int, int] | None = None
        try:
            self._conn = connect(self.path)
            self._identity = _identity(self.path)
        except (sqlite3.Error, OSError) as err:  # never a worker that dies and restarts forever
            logger.error("inference log %s cannot be opened (%s): rows go to the spool %s, "
                         "the log is tried again every %.0fs", self.path, err,
                         spool.path_of(self.path), RETRY_LOG)
            self._spool_until = time.monotonic() + RETRY_LOG
        self._thread = threading.Thread(target=self._run, name="loopline-inference-log",
                                        daemon=True)
        self._thread.start()
        atexit.register(self.close)

    @property
    def accepting(self) -> bool:
        """False while rows can be written neither to the log nor to its spool."""
        return not any(self._held.values())

    # ---------------------------------------------------------------- the hot path

    def predictions(self, request_id: str, ts: float, version: str, records: Sequence[Mapping],
                    labels: Any, proba: Any, classes: Sequence[str], latency_ms: float) -> None:
        """Queue one request's predictions (returns at once)."""
        self._predictions.append((request_id, ts, version, records, labels, proba, classes, latency_ms))
        self._waiting += len(records)
        if self._waiting >= self.flush_rows:
            self._wake.set()

    def feedback(self, items: Iterable[tuple[str, int, str]], ts: float) -> None:
        """Queue ``(request_id, idx, label)`` feedback rows."""
        self._feedback.extend((rid, idx, label, ts) for rid, idx, label in items)
        self._wake.set()

    def request_error(self, ts: float, route: str, status: int,
                      version: str | None = None) -> None:
        """Queue a request error (written with the next batch)."""
        self._request_errors.append((ts, route, int(status), version))

    # ------------------------------------------------------------------ the writer

    @property
    def pending(self) -> int:
        """Requests, feedback rows and request errors not yet written."""
        return len(self._predictions) + len(self._feedback) + len(self._request_errors)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self._flush_safely()
        self._flush_safely()

    def _flush_safely(self) -> None:
        try:
            self._flush()
        except Exception:  # a bug here must not stop logging for the life of the process
            logger.exception("inference log %s: unexpected error while writing", self.path)

    def _drain(self, queue: deque) -> list:
        out = []
        while True:
            try:
                out.append(queue.popleft())
            except IndexError:
                return out

    def _flush(self) -> None:
        batch = self._drain(self._predictions)
        feedback = self._drain(self._feedback)
        errors = self._drain(self._request_errors)
        if not (batch or feedback or errors or not self.accepting):
            return  # nothing new, nothing held
        self._inflight = (len(batch) + len(feedback) + len(errors)
                          + sum(len(v) for v in self._held.values()))
        self._waiting = max(0, self._waiting - sum(len(item[3]) for item in batch))
        held, self._held = self._held, {"requests": [], "feedback": [], "errors": []}
        rows = {"requests": held["requests"] + self._rows(batch),
                "feedback": held["feedback"] + feedback, "errors": held["errors"] + errors}
        try:
            self._write(rows)
        finally:
            self._inflight = 0

    def _write(self, rows: dict[str, list]) -> None:
        """Commit ``rows`` to the log, else to the spool, else hold them for the next try.

        Once the log failed, rows go straight to the spool and the log is tried again
        every :data:`RETRY_LOG` seconds (one line in the service log per change, not per batch).
        """
        if time.monotonic() < self._spool_until and not self._stop.is_set():
            return self._spool(rows)
        started, delay, attempts = time.monotonic(), 0.05, 0
        while True:
            attempts += 1
            try:
                if self._conn is not None and _identity(self.path) != self._identity:
                    # moved or deleted under the service: write where the log is looked for
                    logger.warning("inference log %s was moved or deleted while served: "
                                   "writing to a new one there", self.path)
                    self._close_connection()
                if self._conn is None:
                    self._conn = connect(self.path)
                    self._identity = _identity(self.path)
                with self._conn:
                    for kind in INSERTS:
                        if rows[kind]:
                            insert(self._conn, kind, rows[kind])
                self.written += sum(r[3] for r in rows["requests"])
                if self._spool_until:
                    self._spool_until = 0.0
                    logger.warning("inference log %s is written again (%d rows went to the "
                                   "spool meanwhile)", self.path, self.spooled)
                return
            except (sqlite3.Error, OSError) as err:
                self.write_failures += 1
                self._count("failed", 1)
                busy = "locked" in str(err) or "busy" in str(err)
                if not (busy and time.monotonic() - started < self.locked_for) and (
                        attempts >= 2 or self._stop.is_set()):
                    if not self._spool_until:
                        logger.error("inference log %s: write failed (%s): rows go to the "
                                     "spool %s, the log is tried again every %.0fs", self.path,
                                     err, spool.path_of(self.path), RETRY_LOG)
                    self._spool_until = time.monotonic() + RETRY_LOG
                    if not busy:  # a damaged file: open it afresh next time
                        self._close_connection()
                    break
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        self._spool(rows)

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                conn.close()
        except sqlite3.Error:
            pass

    def _spool(self, rows: dict[str, list]) -> None:
        n = sum(len(v) for v in rows.values())
        try:
            spool.append(self.path, rows)
        except OSError as err:
            if self._stop.is_set():
                self.lost += n
                self._count("lost", n)
                logger.error("inference log %s: LOST %d rows at shutdown: neither the log nor "
                             "its spool %s can be written (%s)", self.path, n,
                             spool.path_of(self.path), err)
                return
            if self.accepting:
                logger.error("inference log %s: neither the log nor its spool %s can be "
                             "written (%s): rows held, predictions refused until a write "
                             "succeeds", self.path, spool.path_of(self.path), err)
            self._held = {k: rows[k] + self._held[k] for k in rows}
            return
        self.spooled += n
        self._count("spooled", n)
        logger.debug("inference log %s: %d rows spooled", self.path, n)

    def _rows(self, batch: list) -> list[tuple]:
        rows = []
        for rid, ts, version, records, labels, proba, classes, latency in batch:
            shadow = self._score_shadow(records)
            inputs = records.columns if hasattr(records, "columns") else records
            rows.append((rid, ts, version, len(records), dumps(inputs), dumps(labels.tolist()),
                         dumps(proba), dumps(list(classes)), latency, *shadow))
        return rows

    def _score_shadow(self, records: Any) -> tuple:
        """The shadow version, its predictions and probabilities (JSON) for a request."""
        shadow = self._shadow()
        if shadow is None:
            return (None, None, None)
        try:
            if hasattr(records, "columns"):
                labels, proba = shadow.model.run_columns(records.columns, len(records))
            else:
                labels, proba = shadow.model.run_records(records)
        except Exception as err:  # a shadow must never cost the champion a log row
            logger.error("shadow model %s failed on %d records: %s", shadow.version,
                         len(records), err)
            return (shadow.version, None, None)
        return (shadow.version, dumps(labels.tolist()),
                dumps({"classes": shadow.classes, "p": proba}))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is kept (log or spool); False on timeout."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while (self.pending or self._inflight or not self.accepting) and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.01)
        return not (self.pending or self._inflight or not self.accepting)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued and stop the writer (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self._close_connection()
        atexit.unregister(self.close)
