"""Git, as loopline calls it: one runner for every command (registry, reports, CI, init)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from loopline.core.errors import LooplineError
from loopline.core.proc import first_line, run


def git(root: str | os.PathLike[str], *args: str, input: str | None = None, check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess:
    """Run git in ``root``; with ``check``, a failure is one line naming the command.

    Raises:
        LooplineError: git cannot be started, or (``check``) it failed.
    """
    res = run(["git", *args], cwd=root, what="git", input=input, env=env, check=False,
              timeout=timeout, pass_fds=pass_fds)
    if check and res.returncode != 0:
        raise LooplineError(f"git {args[0]} failed in {root}: {first_line(res.stderr)}")
    return res


def git_out(root: str | os.PathLike[str], *args: str) -> str | None:
    """git's stripped stdout, or None when it fails (e.g. outside a repository)."""
    try:
        res = git(root, *args, check=False, timeout=30)
    except LooplineError:
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def common_dir(root: str | os.PathLike[str]) -> Path:
    """The repository's common git directory (shared by its worktrees: tags live there)."""
    res = git(root, "rev-parse", "--path-format=absolute", "--git-common-dir")
    return Path(res.stdout.strip())


def show(root: Path, rev: str, path: str) -> str | None:
    """The text of ``path`` (relative to ``root``) at ``rev``, or None where it does not exist."""
    res = git(root, "show", f"{rev}:./{path}", check=False)
    return res.stdout if res.returncode == 0 else None
