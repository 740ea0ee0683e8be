"""The reference instance as a repository of its own: the loopline checkout's files (what
``git ls-files`` lists, plus untracked files that are not ignored) in a fresh git repo, so
its workflows can install loopline from it on a fresh runner (``loopline ci``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.helpers import REPO
from tests.helpers.commands import loopline, sh
from tests.helpers.instance import fast_settings


def reference_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "-co", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(p for p in out.split("\0") if p and (REPO / p).is_file())


def reference_repo(dest: Path, *, fast: bool = True) -> Path:
    """A git repo in ``dest`` holding the reference instance and loopline, one commit on main."""
    for rel in reference_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    sh("git", "init", "-q", "-b", "main", cwd=dest)
    if fast:
        fast_settings(dest)
        loopline("params", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-q", "-m", "the reference instance", cwd=dest)
    return dest


def commit(root: Path, msg: str) -> None:
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-q", "-m", msg, cwd=root)


def bare_origin(root: Path, origin: Path) -> Path:
    """``origin`` as a bare clone of ``root``, and ``root``'s remote origin."""
    sh("git", "clone", "-q", "--bare", str(root), str(origin), cwd=root)
    sh("git", "remote", "add", "origin", str(origin), cwd=root)
    sh("git", "fetch", "-q", "origin", cwd=root)
    return origin


def remote_tags(origin: Path) -> set[str]:
    out = sh("git", "ls-remote", "--tags", str(origin), cwd=origin).stdout
    return {line.split("refs/tags/", 1)[1] for line in out.splitlines() if "refs/tags/" in line}
