"""A registry command killed at any point (SIGKILL or SIGTERM, during `git push` too) leaves
the old state or the new one, here and on the remote; the next command says what it repaired.

The origin's pre-receive hook sleeps, so a good share of the kills land while the push is
in flight. After each kill: one `loopline which` (which repairs), then local tags must equal
the remote's, a fresh clone must name the same prod version, and the command must succeed
when run again.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers import BIN
from tests.helpers.commands import loopline, sh
from tests.helpers.registry_repo import ART, Repo, git

KILLS = 20  # per command
HOOK = "#!/bin/sh\nsleep 0.4\n"


def _tags(lines: str) -> dict[str, str]:
    out = {}
    for line in lines.splitlines():
        sha, _, ref = line.partition(" ") if " " in line else line.partition("\t")
        if ref.startswith(f"refs/tags/{ART}") and not ref.endswith("^{}"):
            out[ref] = sha
    return out


def local_tags(root: Path) -> dict[str, str]:
    return _tags(git(root, "for-each-ref", "--format=%(objectname) %(refname)", "refs/tags"))


def remote_tags(root: Path) -> dict[str, str]:
    return _tags(git(root, "ls-remote", "origin", "refs/tags/*"))


def prod_in_fresh_clone(origin: Path, where: Path) -> str | None:
    git(where.parent, "clone", "-q", str(origin), where.name)
    res = loopline("which", "prod", cwd=where, check=False)
    sh("rm", "-rf", str(where), cwd=where.parent)
    return res.stdout.strip() if res.returncode == 0 else None


def kill_at_random(args: list[str], cwd: Path, sig: int, full: float,
                   rng: random.Random) -> bool:
    """Start ``loopline ARGS``, send ``sig`` at a random point; True if it was still running."""
    proc = subprocess.Popen([str(BIN / "loopline"), *args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.0, full))
    alive = proc.poll() is None
    if alive:
        os.kill(proc.pid, sig)
    proc.wait()
    return alive


def test_killed_register_and_promote_leave_a_consistent_registry(tmp_path: Path) -> None:
    rng = random.Random(16)
    repo = Repo(tmp_path / "repo")
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(repo.path, "remote", "add", "origin", str(origin))
    repo.model("a")
    git(repo.path, "push", "-q", "origin", "main")
    hook = origin / "hooks" / "pre-receive"
    hook.write_text(HOOK)
    hook.chmod(0o755)
    start = time.monotonic()
    loopline("register", "--push", "origin", cwd=repo.path)
    full = time.monotonic() - start  # how long an uninterrupted command takes
    loopline("promote", "v0.1.0", "--to", "prod", "--push", "origin", cwd=repo.path)

    killed = inconsistent = repaired = 0
    versions = 1
    for i in range(2 * KILLS):
        sig = (signal.SIGKILL, signal.SIGTERM)[i % 2]
        if i < KILLS:  # register a new model's commit
            repo.model(f"m{i}")
            git(repo.path, "push", "-q", "origin", "main")
            args = ["register", "--push", "origin"]
        else:  # promote the version that is not in prod
            cur = loopline("which", "prod", cwd=repo.path).stdout.strip()
            target = "v0.1.0" if cur != "v0.1.0" else f"v0.{versions}.0"
            args = ["promote", target, "--to", "prod", "--push", "origin"]
        killed += kill_at_random(args, repo.path, sig, full, rng)
        res = loopline("which", "prod", cwd=repo.path)  # the next command repairs
        said = [ln for ln in res.stderr.splitlines() if ln.startswith("repaired: ")]
        repaired += bool(said)
        assert len(res.stderr.splitlines()) == len(said), res.stderr
        here, there = local_tags(repo.path), remote_tags(repo.path)
        same = here == there
        same = same and prod_in_fresh_clone(origin, tmp_path / "fresh") == res.stdout.strip()
        inconsistent += not same
        assert same, (args, sig, sorted(set(here.items()) ^ set(there.items())))
        # the command works again: register (if the kill came before it counted) or promote
        if i < KILLS:
            if not any(f"{ART}@" in t and git(repo.path, "rev-parse", f"{t}^{{commit}}")
                       == git(repo.path, "rev-parse", "HEAD") for t in here):
                loopline(*args, cwd=repo.path)
            versions = len([t for t in local_tags(repo.path) if "@" in t])
        else:
            loopline(*args, cwd=repo.path, check=False)  # "already current" is fine too
            assert local_tags(repo.path) == remote_tags(repo.path)
    print(f"\nkills tried {2 * KILLS}, landed while running {killed}, repaired {repaired}, "
          f"inconsistent states {inconsistent}")
    assert inconsistent == 0 and killed >= KILLS  # most kills hit a running command
    assert repaired > 0  # some kills landed inside the transaction
