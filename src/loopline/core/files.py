"""Writing stage outputs so that a failed stage leaves nothing half-written.

Every file is written to a temporary sibling and renamed into place (atomic on POSIX).
:class:`Outputs` records what a stage wrote and removes all of it if the stage fails, so
DVC never sees partial outputs and nothing downstream runs on them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def md5_file(path: str | os.PathLike[str]) -> str:
    """The MD5 DVC records for a file (for files DVC hashes the raw bytes)."""
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _clean(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None (JSON has neither)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_atomic(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` then rename the temp file onto ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        writer(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return write_atomic(path, lambda p: p.write_bytes(data))


def dumps_json(obj: Any) -> str:
    return json.dumps(_clean(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return write_text(path, dumps_json(obj))


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


class Outputs:
    """Track the files a stage writes; on failure, remove them all.

    Use as ``with Outputs(root) as out: out.json("reports/x.json", {...})``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.written: list[Path] = []

    def path(self, rel: str | os.PathLike[str]) -> Path:
        p = self.root / rel
        self.written.append(p)
        return p

    def json(self, rel: str | os.PathLike[str], obj: Any) -> Path:
        return write_json(self.path(rel), obj)

    def text(self, rel: str | os.PathLike[str], text: str) -> Path:
        return write_text(self.path(rel), text)

    def bytes(self, rel: str | os.PathLike[str], data: bytes) -> Path:
        return write_bytes(self.path(rel), data)

    def parquet(self, rel: str | os.PathLike[str], df: Any) -> Path:
        return write_atomic(self.path(rel), lambda p: df.to_parquet(p, index=False))

    def csv(self, rel: str | os.PathLike[str], df: Any) -> Path:
        return write_atomic(
            self.path(rel), lambda p: df.to_csv(p, index=False, float_format="%.6g")
        )

    def custom(self, rel: str | os.PathLike[str], writer: Callable[[Path], None]) -> Path:
        return write_atomic(self.path(rel), writer)

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            for p in self.written:
                p.unlink(missing_ok=True)


@contextmanager
def removed_on_failure(*paths: Path) -> Iterator[None]:
    """Remove ``paths`` if the body raises (for outputs written by other libraries)."""
    try:
        yield
    except BaseException:
        for p in paths:
            p.unlink(missing_ok=True)
        raise
