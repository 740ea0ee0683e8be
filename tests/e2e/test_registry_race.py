"""Concurrent promotions from several clones against one origin: exactly one wins each race,
and every loser is told that another promotion won and to fetch and retry, whatever form
git's rejection took."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers import BIN
from tests.helpers.commands import loopline
from tests.helpers.registry_repo import ART, Repo, git

RACES = 20
CLONES = 3
CLEAR = ("another promotion won the race", "remote origin moved")


def test_concurrent_promotions_have_one_winner_and_clear_losers(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo")
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(repo.path, "remote", "add", "origin", str(origin))
    for label in ("a", "b"):
        repo.model(label)
        loopline("register", "--push", "origin", cwd=repo.path)
    git(repo.path, "push", "-q", "origin", "main")
    clones = []
    for i in range(CLONES):
        git(tmp_path, "clone", "-q", str(origin), f"c{i}")
        clones.append(tmp_path / f"c{i}")
    hook = origin / "hooks" / "pre-receive"
    vague: list[str] = []
    forms: set[str] = set()
    for race in range(RACES):
        # vary how long the origin takes, so pushes overlap in different phases
        hook.write_text(f"#!/bin/sh\nsleep 0.{race % 4}\n")
        hook.chmod(0o755)
        for c in clones:
            git(c, "fetch", "-q", "origin", "--tags")
        cur = loopline("which", "prod", cwd=clones[0], check=False).stdout.strip()
        target = "v0.2.0" if cur == "v0.1.0" else "v0.1.0"
        # each clone is someone else (the same person making the same tag in the same
        # second makes the same tag object: pushing it twice is not a race)
        procs = [subprocess.Popen([str(BIN / "loopline"), "promote", target, "--to", "prod",
                                  "--push", "origin"], cwd=c, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "GIT_COMMITTER_NAME": f"user {i}"})
                 for i, c in enumerate(clones)]
        results = [(p.wait(), *p.communicate()) for p in procs]
        winners = [r for r in results if r[0] == 0]
        assert len(winners) == 1, results
        for code, _, err in results:
            if code == 0:
                continue
            forms.add(next((c for c in CLEAR if c in err), "other"))
            if not any(c in err for c in CLEAR) or len(err.strip().splitlines()) != 1:
                vague.append(err)
        remote = git(repo.path, "ls-remote", "origin", f"refs/tags/{ART}#prod#*")
        assert len([ln for ln in remote.splitlines() if not ln.endswith("^{}")]) == race + 1
    print(f"\nraces {RACES} x {CLONES} clones, losers {RACES * (CLONES - 1)}, "
          f"vague messages {len(vague)}, forms {sorted(forms)}")
    assert vague == []
