"""The inference log checked once at start-up, before any server process opens it.

``loopline serve`` (and the service module, when started without it, e.g. from a Bento)
calls :func:`open_log`: the folder and the file must be what they claim, the file a SQLite
database that passes ``PRAGMA quick_check``, with loopline's tables (``PRAGMA
user_version`` = :data:`~loopline.serving.inference_log.SCHEMA_VERSION`). A bad log stops
start-up with one line that names the file and the fix; nothing is deleted, ever:
``loopline serve --log-reset`` moves a bad log aside with a time suffix (:func:`move_aside`).
A missing log is created (never as a 0-byte file, so a 0-byte log is one that was cut
short); records spooled while the log could not take them are replayed into it.
``loopline monitor`` reads a log only after :func:`inspect` found it sound.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from loopline.core.errors import LooplineError
from loopline.core.layout import LOG_ASIDE_SUFFIX
from loopline.serving import spool

CHECKED_ENV = "LOOPLINE_LOG_CHECKED"  # set to the log's path once it was checked
FIX = "move it aside, or start with `loopline serve --log-reset` (moves it aside, keeps it)"


class BadLog(LooplineError):
    """The inference log cannot be used as it is."""


def _expected() -> dict[str, list[str]]:
    from loopline.serving.inference_log import SCHEMA

    mem = sqlite3.connect(":memory:")
    try:
        mem.executescript(SCHEMA)
        return _layout(mem)
    finally:
        mem.close()


def _layout(conn: sqlite3.Connection) -> dict[str, list[str]]:
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
    return {t: [c[1] for c in conn.execute(f'PRAGMA table_info("{t}")')] for t in tables}


def _where(path: Path) -> None:
    """Refuse a log whose folder is a file, or which is itself a folder or a 0-byte file."""
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise BadLog(f"{folder} is a file, not a folder, so the inference log {path} cannot "
                     f"be there: move {folder} aside, or start with `loopline serve --log-reset`")
    if path.is_dir():
        raise BadLog(f"inference log {path} is a folder, not a file: {FIX}")
    if path.exists() and not path.is_file():
        raise BadLog(f"inference log {path} is not a regular file: {FIX}")
    if path.is_file() and path.stat().st_size == 0:
        raise BadLog(f"inference log {path} is empty (0 bytes): a log loopline made is never "
                     f"empty, so this one was cut short and its records are gone; {FIX}")


def inspect(path: str | os.PathLike[str], *, readonly: bool = True) -> sqlite3.Connection:
    """A connection to the log at ``path`` once it passed every check (the caller closes it).

    Raises:
        BadLog: a missing, damaged or foreign file, or a table layout this loopline does not
            write; the message names the file and the fix.
    """
    path = Path(path)
    _where(path)
    if not path.is_file():
        raise BadLog(f"no inference log at {path}: serve the model first (`loopline serve`)")
    try:
        if readonly:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
        else:
            conn = sqlite3.connect(path, timeout=30.0)
    except sqlite3.Error as err:
        raise BadLog(f"inference log {path} cannot be opened ({err}): {FIX}") from err
    try:
        _sound(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _sound(conn: sqlite3.Connection, path: Path) -> None:
    from loopline.serving.inference_log import SCHEMA_VERSION

    try:
        problems = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        layout = _layout(conn)
    except sqlite3.DatabaseError as err:  # "file is not a database", "malformed", ...
        raise BadLog(f"inference log {path} is damaged ({err}): {FIX}") from err
    if problems != ["ok"]:
        found = "; ".join(line.strip() for p in problems for line in str(p).splitlines())
        raise BadLog(f"inference log {path} is damaged (SQLite's check: {found[:200]}): {FIX}")
    if version > SCHEMA_VERSION:
        raise BadLog(f"inference log {path} has layout version {version}, newer than this "
                     f"loopline's ({SCHEMA_VERSION}): upgrade loopline, or {FIX}")
    expected = _expected()
    if layout and "requests" not in layout:
        raise BadLog(f"{path} is not an inference log (it holds tables "
                     f"{', '.join(sorted(layout))}): {FIX}")
    for table, columns in layout.items():
        if table in expected and columns != expected[table]:
            raise BadLog(f"inference log {path} has an old or foreign layout: table {table} has "
                         f"columns {', '.join(columns)}, loopline writes "
                         f"{', '.join(expected[table])}; {FIX}")


def move_aside(path: str | os.PathLike[str]) -> list[Path]:
    """Move the log (and its -wal/-shm), or a file where its folder should be, aside:
    ``<name>.<UTC time>.aside``. Returns where they went; nothing is deleted."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = []
    if path.parent.exists() and not path.parent.is_dir():
        targets = [path.parent]
    else:
        targets = [path.with_name(path.name + s) for s in ("", "-wal", "-shm")]
    for src in targets:
        if src.exists() or src.is_symlink():
            dest = src.with_name(f"{src.name}.{stamp}{LOG_ASIDE_SUFFIX}")
            n = 1
            while dest.exists():
                n += 1
                dest = src.with_name(f"{src.name}.{stamp}-{n}{LOG_ASIDE_SUFFIX}")
            os.rename(src, dest)
            moved.append(dest)
    return moved


def _create(path: Path) -> None:
    """A new log, built beside ``path`` and linked into place: never seen half made."""
    from loopline.serving.inference_log import connect

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    connect(tmp).close()
    try:
        os.link(tmp, path)  # fails if another process made it meanwhile: theirs is as good
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def open_log(path: str | os.PathLike[str], *, reset: bool = False) -> dict[str, Any]:
    """Check (with ``reset``: first move aside) the log at ``path``, create it if missing,
    replay its spool. Called once per start-up, before any server process opens it.

    Returns ``{path, created, moved_aside, replayed, unreadable}``.

    Raises:
        BadLog: as :func:`inspect`; the service must not start.
    """
    path = Path(path)
    moved = move_aside(path) if reset else []
    _where(path)
    created = not path.exists()
    if created:
        try:
            _create(path)
        except (OSError, sqlite3.Error) as err:
            raise BadLog(f"inference log {path} cannot be created ({err}): make its folder "
                         "writable or point serve.log.path (or --log) elsewhere") from err
    conn = inspect(path, readonly=False)
    try:
        from loopline.serving.inference_log import SCHEMA, SCHEMA_VERSION

        try:
            conn.executescript(SCHEMA)  # tables a log from before them lacks (errors)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            replayed, unreadable = spool.replay(path, conn)
        except sqlite3.Error as err:
            raise BadLog(f"inference log {path} cannot be written ({err}): make it writable, "
                         f"or {FIX}") from err
        except OSError as err:
            raise BadLog(f"the spool of inference log {path} cannot be replayed ({err}): make "
                         f"{spool.path_of(path)} readable and its folder writable") from err
    finally:
        conn.close()
    os.environ[CHECKED_ENV] = str(path)  # the server processes started after this skip it
    return {"path": str(path), "created": created, "moved_aside": [str(m) for m in moved],
            "replayed": replayed, "unreadable": unreadable}
