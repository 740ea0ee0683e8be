"""The inference log's spool: records the log could not take, kept durably until it can.

When a write to the log fails for good (a damaged file, a full or read-only disk), the
writer appends the rows here instead: JSON lines beside the log (``<log>.spool.jsonl``),
one ``os.write`` per batch with ``O_APPEND`` (several server processes append at once) and
``fsync`` before the write counts as done. The next start-up replays the spool into the
log (:func:`replay`) and removes it; ``loopline monitor`` warns while records wait here.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import orjson

from loopline.core.layout import LOG_REPLAYING_SUFFIX, LOG_SPOOL_SUFFIX

KINDS = ("requests", "feedback", "errors")
WIDTH = {"requests": 12, "feedback": 4, "errors": 4}  # columns of each table


def path_of(log: str | os.PathLike[str]) -> Path:
    """The spool of the log at ``log``."""
    log = Path(log)
    return log.with_name(log.name + LOG_SPOOL_SUFFIX)


def append(log: str | os.PathLike[str], rows: dict[str, Iterable[tuple]]) -> int:
    """Append ``rows`` (by kind: requests, feedback, errors) to the spool and fsync it.

    Returns the number of rows written. Raises OSError when the spool cannot be written.
    """
    lines = [orjson.dumps({"k": kind, "r": list(row)}) for kind in KINDS
             for row in rows.get(kind, ())]
    if not lines:
        return 0
    data = b"\n".join(lines) + b"\n"
    path = path_of(log)
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:  # the file's name must survive a crash too
        _fsync_dir(path.parent)
    return len(lines)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _files(log: Path) -> list[Path]:
    """The spool and any spool left half-replayed by a start-up that was killed."""
    base = path_of(log)
    return sorted(p for p in base.parent.glob(base.name + "*")
                  if p == base or p.name.startswith(base.name + LOG_REPLAYING_SUFFIX))


def pending(log: str | os.PathLike[str]) -> int:
    """Records waiting in the spool (and in a half-replayed one) of ``log``."""
    total = 0
    for p in _files(Path(log)):
        try:
            with open(p, "rb") as f:
                total += sum(1 for line in f if line.strip())
        except OSError:
            continue
    return total


def replay(log: str | os.PathLike[str], conn: sqlite3.Connection) -> tuple[int, int]:
    """Write the spooled rows into ``conn`` (the log) in one transaction, then drop the spool.

    The spool is first renamed aside (so a process appending meanwhile starts a new one,
    and two start-ups never replay it twice). Requests and feedback replace rows of the
    same key, so a replay cut short after its commit and run again writes them once (a
    request error would then be counted twice).

    Returns ``(rows written, lines unreadable)``; a torn last line (a crash mid-append)
    is unreadable, and so counted, never silently dropped.
    """
    from loopline.serving.inference_log import INSERTS

    log = Path(log)
    base = path_of(log)
    mine = base.with_name(f"{base.name}{LOG_REPLAYING_SUFFIX}-{os.getpid()}")
    files = [p for p in _files(log) if p != base]
    try:
        os.rename(base, mine)
        files.append(mine)
    except FileNotFoundError:
        pass
    if not files:
        return 0, 0
    rows: dict[str, list[tuple]] = {k: [] for k in KINDS}
    bad = 0
    for p in files:
        for line in p.read_bytes().splitlines():
            if not line.strip():
                continue
            try:
                item = orjson.loads(line)
                row = tuple(item["r"])
                if len(row) != WIDTH[item["k"]]:
                    raise TypeError("wrong width")
                rows[item["k"]].append(row)
            except (orjson.JSONDecodeError, KeyError, TypeError):
                bad += 1
    with conn:
        for kind in KINDS:
            if rows[kind]:
                conn.executemany(INSERTS[kind], rows[kind])
    for p in files:
        p.unlink(missing_ok=True)
    return sum(len(v) for v in rows.values()), bad
