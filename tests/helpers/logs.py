"""Inference logs for tests: a sound one with rows, and each way one can be damaged."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.helpers.contract import GOOD


def queue(log, rid: str, n: int = 1, records: list[dict] | None = None) -> None:  # noqa: ANN001
    """Queue one request of ``n`` records (GOOD) in an ``InferenceLog``."""
    records = records or [GOOD] * n
    n = len(records)
    log.predictions(rid, time.time(), "v1", records, np.array(["good"] * n, dtype=object),
                    np.tile([0.2, 0.8], (n, 1)), ["bad", "good"], 0.5)


def sound_log(path: Path, requests: int = 200) -> Path:
    """A log written by the service's writer: ``requests`` requests of 3 records, checkpointed."""
    from loopline.serving.log_writer import InferenceLog

    log = InferenceLog(path, flush_interval=0.01)
    for i in range(requests):
        queue(log, f"r{i}", 3)
    log.feedback([("r0", 0, "bad")], time.time())
    log.close()
    return path


def _garble(path: Path, start: int, length: int) -> None:
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(os.urandom(length))


def _old_layout(path: Path) -> None:
    path.unlink()
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE requests (request_id TEXT PRIMARY KEY, ts REAL, "
                       "model_version TEXT, inputs TEXT, predictions TEXT);"
                       "INSERT INTO requests VALUES ('x', 1.0, 'v0', '[]', '[]');")
    conn.commit()
    conn.close()


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "something").write_text("x")


def _logs_is_a_file(path: Path) -> None:
    folder = path.parent
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()
    folder.write_text("not a folder\n")


#: name -> (damage the sound log at path, words the refusal must hold)
DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated": (lambda p: os.truncate(p, p.stat().st_size // 2 + 100), "damaged"),
    "empty (0 bytes)": (lambda p: os.truncate(p, 0), "empty (0 bytes)"),
    "garbled header": (lambda p: _garble(p, 0, 100), "damaged"),
    "garbled pages": (lambda p: _garble(p, 4096 * 2, p.stat().st_size - 4096 * 3), "damaged"),
    "old layout": (_old_layout, "old or foreign layout"),
    "a folder": (_directory, "is a folder, not a file"),
    "logs is a file": (_logs_is_a_file, "is a file, not a folder"),
}
