"""Files as loopline reads and writes them: atomic writes, digests, JSON.

Every file loopline writes goes through :func:`write_atomic`: a unique temporary sibling,
never opened through a symlink, renamed into place (atomic on POSIX), with the mode the
user's umask gives; logs are appended with :func:`append_text`.
:class:`Outputs` records what a stage wrote and removes all of it if the stage fails, so
DVC never sees partial outputs and nothing downstream runs on them. Reading JSON goes
through :func:`read_json` (loopline's own outputs), :func:`load_json` (a file a user or
another command provides: a clear error) or :func:`json_or_none` (optional reports).
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
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


def file_mode() -> int:
    """The mode a new file gets from the user's umask (0644 under the usual umask 022)."""
    try:  # Linux: read the umask without changing it (os.umask would, for every thread)
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


class NotWritten(Exception):
    """Raised by a ``check`` of :func:`write_atomic`: the temp file is dropped, nothing replaced."""


def write_atomic(path: str | os.PathLike[str], writer: Callable[[Path], None] | None = None, *,
                 chunks: Iterable[bytes] | None = None,
                 check: Callable[[Path], None] | None = None, executable: bool = False) -> Path:
    """The one way loopline writes a file: a unique temp file in the target's directory
    (created exclusively, never through a symlink), filled, checked, then renamed onto
    ``path`` (atomic; a symlink at ``path`` is replaced, never followed). The file gets the
    mode of the user's umask (mkstemp's 0600 is widened to it).

    Args:
        path: The file to write.
        writer: Fills the temp file by its path (for libraries that write files themselves:
            pandas, pyarrow).
        chunks: Or the bytes to write, written through the temp file's descriptor.
        check: Called on the filled temp file; raising :class:`NotWritten` (or anything)
            drops it and leaves ``path`` as it was.
        executable: Also the execute bits the umask allows (a copied script).

    Raises:
        IsADirectoryError: ``path`` is a directory.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir() and not target.is_symlink():
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(target))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        mode = file_mode()
        os.fchmod(fd, mode | (mode & 0o444) >> 2 if executable else mode)
        if chunks is not None:
            with os.fdopen(fd, "wb", closefd=True) as fh:
                fd = -1
                for chunk in chunks:
                    fh.write(chunk)
        else:
            os.close(fd)
            fd = -1
        if writer is not None:
            writer(Path(tmp))
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return write_atomic(path, chunks=[text.encode("utf-8")])


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return write_atomic(path, chunks=[data])


def read_chunks(path: str | os.PathLike[str], size: int = 1 << 20) -> Iterator[bytes]:
    """A file's bytes in chunks (for :func:`write_atomic` and copies of large files)."""
    with open(path, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def copy_file(src: str | os.PathLike[str], dest: str | os.PathLike[str],
              check: Callable[[Path], None] | None = None) -> Path:
    """Copy ``src`` to ``dest`` through :func:`write_atomic`: the content, and the mode from
    the umask (with execute bits when ``src`` is executable)."""
    return write_atomic(dest, chunks=read_chunks(src), check=check,
                        executable=bool(os.stat(src).st_mode & 0o100))


def append_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Append ``text`` to a log-like file in one write (created with the umask's mode; a
    symlink at ``path`` is refused, never followed)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 file_mode())
    try:
        os.write(fd, text.encode(encoding))
    finally:
        os.close(fd)
    return target


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
