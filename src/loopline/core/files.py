"""Files as loopline reads and writes them: atomic writes, digests, JSON.

Every file is written to a temporary sibling and renamed into place (atomic on POSIX).
:class:`Outputs` records what a stage wrote and removes all of it if the stage fails, so
DVC never sees partial outputs and nothing downstream runs on them. Reading JSON goes
through :func:`read_json` (loopline's own outputs), :func:`load_json` (a file a user or
another command provides: a clear error) or :func:`json_or_none` (optional reports).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def file_digest(path: str | os.PathLike[str], algorithm: str) -> str:
    """The hex digest of a file's bytes, read in 1 MiB chunks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()


def md5_file(path: str | os.PathLike[str]) -> str:
    """The MD5 DVC records for a file (for files DVC hashes the raw bytes)."""
    return file_digest(path, "md5")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 the registry records for a model file."""
    return file_digest(path, "sha256")


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
    """A JSON file as written by loopline (errors are the caller's: a stage's own output)."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def load_json(path: str | os.PathLike[str], what: str) -> dict:
    """A JSON object a user or another command provides; a clear error names ``what``.

    Raises:
        LooplineError: the file is missing, unreadable, not JSON, or not an object.
    """
    from loopline.core.errors import LooplineError

    try:
        doc = read_json(path)
    except FileNotFoundError:
        raise LooplineError(f"{what} is missing: {path}") from None
    except (OSError, ValueError) as err:
        raise LooplineError(f"{what} {path} is not valid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise LooplineError(f"{what} {path} is not a JSON object")
    return doc


def json_or_none(path: str | os.PathLike[str]) -> Any | None:
    """A JSON file's content, or None when it is absent or unreadable (optional reports)."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def read_jsonl(path: str | os.PathLike[str]) -> list[Any]:
    """The records of a JSON-lines file ([] when it does not exist)."""
    p = Path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


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
