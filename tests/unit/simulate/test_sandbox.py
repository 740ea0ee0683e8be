"""The simulation's sandbox (simulate/sandbox.py)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.commands import loopline


def test_a_sandbox_never_replaces_a_directory_it_did_not_make(instance: Path, tmp_path: Path) -> None:
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    res = loopline("simulate", "--workdir", str(keep), cwd=instance, check=False)
    assert res.returncode == 1 and "is not a simulation sandbox" in res.stderr
    assert (keep / "notes.txt").read_text() == "mine"
