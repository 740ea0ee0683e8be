"""The one safe writer (core/files.py): unique temp, no symlink followed, atomic, umask mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from loopline.core.files import (
    NotWritten,
    append_text,
    copy_file,
    file_mode,
    write_atomic,
    write_bytes,
    write_json,
    write_text,
)


@pytest.fixture()
def umask022() -> None:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_files_get_the_umask_mode_not_mkstemps(tmp_path: Path, umask022: None) -> None:
    assert file_mode() == 0o644
    for path in (write_text(tmp_path / "a.txt", "x"), write_bytes(tmp_path / "b", b"x"),
                 write_json(tmp_path / "c.json", {"a": 1}), append_text(tmp_path / "d", "x\n"),
                 copy_file(tmp_path / "b", tmp_path / "e"),
                 write_atomic(tmp_path / "f", lambda p: p.write_text("x"))):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    os.umask(0o077)
    assert stat.S_IMODE(write_text(tmp_path / "g", "x").stat().st_mode) == 0o600


def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    d = tmp_path / "d"
    d.mkdir()
    (d / ".a.txt.tmp").symlink_to(outside / "planted")  # a fixed temp name would follow it
    (d / "a.txt").symlink_to(outside / "target")        # the target itself is a link
    write_text(d / "a.txt", "new")
    assert not (d / "a.txt").is_symlink() and (d / "a.txt").read_text() == "new"
    (d / "log").symlink_to(outside / "log")
    with pytest.raises(OSError):
        append_text(d / "log", "x\n")
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in d.iterdir()) == [".a.txt.tmp", "a.txt", "log"]


def test_a_failed_check_or_writer_leaves_the_old_file(tmp_path: Path) -> None:
    path = write_text(tmp_path / "a", "old")

    def refuse(tmp: Path) -> None:
        assert tmp.read_text() == "new" and tmp.parent == path.parent
        raise NotWritten("no")

    with pytest.raises(NotWritten):
        write_atomic(path, chunks=[b"new"], check=refuse)
    with pytest.raises(ZeroDivisionError):
        write_atomic(path, lambda p: 1 / 0)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a"]
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError):
        write_text(tmp_path / "dir", "x")
