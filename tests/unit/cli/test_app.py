"""The command line as a whole (cli/app.py): help, version, one-line errors, --verbose."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.helpers.commands import loopline


def test_help_and_version() -> None:
    res = loopline("--help", cwd=REPO)
    for cmd in ("params", "run", "stage", "metrics", "schema"):
        assert cmd in res.stdout
    assert loopline("--version", cwd=REPO).stdout.startswith("loopline ")


def test_not_a_repo_is_one_clear_line(tmp_path: Path) -> None:
    res = loopline("run", cwd=tmp_path, check=False)
    assert res.returncode == 1
    assert res.stderr.startswith("error: not a loopline repo")
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [("--verbose", "params"), ("run", "--verbose"), ("-v", "run"),
                                  ("params", "-v")])
def test_verbose_before_or_after_the_command_shows_the_traceback(tmp_path: Path,
                                                                 args: tuple[str, str]) -> None:
    res = loopline(*args, cwd=tmp_path, check=False)
    assert res.returncode == 1 and "Traceback" in res.stderr
    assert res.stderr.rstrip().splitlines()[-1].startswith("error: not a loopline repo")
