"""Writing and pushing registry tags (registry/write.py): a remote that moved."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopline.core.errors import LooplineError
from loopline.registry import actions as registry
from loopline.registry import write
from tests.helpers.registry_repo import ART, Repo, git


def test_push_conflict_when_the_remote_moved_fails_clearly_and_leaves_no_local_tag(
        repo: Repo, origin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo.register("a", push="origin")
    repo.register("b", push="origin")
    git(repo.path, "push", "-q", "origin", "main")
    git(tmp_path, "clone", "-q", str(origin), "other")
    other = tmp_path / "other"
    registry.promote("v0.1.0", "prod", root=other, push="origin")  # a colleague promotes
    # the remote has credit-risk#prod#1, which this clone has not fetched
    with pytest.raises(LooplineError, match=r"remote origin moved: it has credit-risk#prod#1.*"
                                            r"fetch tags .* and retry"):
        registry.promote("v0.2.0", "prod", root=repo.path, push="origin")
    assert f"{ART}#prod#1" not in repo.tags()
    # the race: the colleague pushes between our check and our push
    monkeypatch.setattr(write, "remote_tags", lambda *a: {})
    with pytest.raises(LooplineError, match=r"another promotion won the race: credit-risk#prod#1 "
                                            r"was created on origin first; fetch tags .* retry"):
        registry.promote("v0.2.0", "prod", root=repo.path, push="origin")
    assert [t for t in repo.tags() if "#" in t] == []
    monkeypatch.undo()
    git(repo.path, "fetch", "-q", "origin", "--tags")
    res = registry.promote("v0.2.0", "prod", root=repo.path, push="origin")
    assert res["tag"] == f"{ART}#prod#2" and res["pushed"] == "origin"
    remote = git(repo.path, "ls-remote", "--tags", "origin")
    assert f"refs/tags/{ART}#prod#2" in remote
