"""Fixtures of the unit tests of more than one package: the hand-made registry repo
(tests.helpers.registry_repo), used by the registry's tests and the registry CLI's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.registry_repo import Repo, git


@pytest.fixture()
def registry_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tags and commits by "registry tests", whatever the machine or CI says."""
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "registry tests")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "registry@loopline.invalid")
    monkeypatch.delenv("GIT_COMMITTER_DATE", raising=False)
    monkeypatch.delenv("GITHUB_ACTOR", raising=False)


@pytest.fixture()
def repo(tmp_path: Path, registry_identity: None) -> Repo:
    return Repo(tmp_path / "repo")


@pytest.fixture()
def origin(tmp_path: Path, repo: Repo) -> Path:
    """A bare origin holding the repo's main branch."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(repo.path, "remote", "add", "origin", str(bare))
    return bare
