"""Writing and pushing registry tags (registry/write.py): a remote that moved."""

from __future__ import annotations

import subprocess
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
    # the race: the colleague pushes between our check and our push (so neither their tag
    # nor the marker of its number, which the check above fetched, is known here)
    git(repo.path, "update-ref", "-d", f"refs/loopline/assigned/{ART}/prod/1")
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


RACE_FORMS = {
    "atomic": ("!\trefs/tags/x:refs/tags/credit-risk#prod#2\t[remote rejected] "
               "(atomic transaction failed)\n", "error: failed to push some refs to 'o'\n"),
    "lock": ("!\trefs/tags/x:refs/tags/credit-risk#prod#2\t[remote rejected] (failed to "
             "update ref)\n", "remote: error: cannot lock ref 'refs/tags/credit-risk#prod#2': "
             "reference already exists\nerror: failed to push some refs to 'o'\n"),
    "client": ("!\trefs/tags/x:refs/tags/credit-risk#prod#2\t[rejected] (already exists)\n",
               "error: failed to push some refs to 'o'\n"),
    "bare": ("", "error: failed to push some refs to 'o'\n"),  # only the remote tells
}


@pytest.mark.parametrize("form", sorted(RACE_FORMS))
def test_every_form_of_a_lost_race_says_so(repo: Repo, origin: Path, form: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    repo.register("a", push="origin")
    registry.promote("v0.1.0", "prod", root=repo.path, push="origin")
    repo.register("b", push="origin")
    out, err = RACE_FORMS[form]
    real = write.git

    def refused(root, *args, **kw):  # the push is refused as git words it; the rest is real
        if args[0] == "push":
            return subprocess.CompletedProcess(args, 1, out, err)
        return real(root, *args, **kw)

    monkeypatch.setattr(write, "git", refused)
    if form == "bare":  # the remote has the name now: a colleague's tag
        monkeypatch.setattr(write, "_remote", lambda *a: {f"refs/tags/{ART}#prod#2": "f" * 40})
    with pytest.raises(LooplineError, match=r"^another promotion won the race: credit-risk#prod#2 "
                                            r"was created on origin first; fetch tags \(git "
                                            r"fetch origin --tags\) and retry$"):
        registry.promote("v0.2.0", "prod", root=repo.path, push="origin")
    assert f"{ART}#prod#2" not in repo.tags()
    monkeypatch.undo()
    monkeypatch.setattr(write, "git", lambda root, *a, **kw: (
        subprocess.CompletedProcess(a, 1, "", "remote: pre-receive hook declined\nerror: "
                                    "failed to push some refs to 'o'\n") if a[0] == "push"
        else real(root, *a, **kw)))
    with pytest.raises(LooplineError, match=r"^push to origin failed: error: failed to push "
                                            r"some refs to 'o' \(nothing was created\)$"):
        registry.promote("v0.2.0", "prod", root=repo.path, push="origin")


def test_a_number_deleted_on_the_remote_is_never_reused(repo: Repo, origin: Path,
                                                        tmp_path: Path) -> None:
    repo.register("a", push="origin")
    repo.register("b", push="origin")
    git(repo.path, "push", "-q", "origin", "main")
    registry.promote("v0.1.0", "prod", root=repo.path, push="origin")
    registry.promote("v0.2.0", "prod", root=repo.path, push="origin")
    git(repo.path, "push", "-q", "--delete", "origin", f"{ART}#prod#2")  # a revert on origin
    git(tmp_path, "clone", "-q", str(origin), "fresh")
    fresh = tmp_path / "fresh"
    assert registry.which("prod", root=fresh)["version"] == "v0.1.0"
    # the fresh clone cannot see #2, but the remote's marker of it: the next one is #3
    assert registry.promote("v0.2.0", "prod", root=fresh, push="origin")["tag"] == f"{ART}#prod#3"
    git(repo.path, "fetch", "-q", "origin", "--tags")  # no "would clobber existing tag"
    assert registry.which("prod", root=repo.path)["version"] == "v0.2.0"
    # and the fresh clone's history shows the deleted #2 (its marker came with the push)
    events = [(e["event"], e["n"], e["version"])
              for e in registry.history(fresh, stage="prod")]
    assert events == [("promote", 3, "v0.2.0"), ("deleted", 2, "v0.2.0"), ("promote", 1, "v0.1.0")]
    # a later tag carries the high-water mark, so even a clone with no marker knows #2..3
    registry.promote("v0.1.0", "staging", root=fresh, push="origin")
    git(tmp_path, "clone", "-q", str(origin), "third")
    git(tmp_path / "third", "tag", "-d", f"{ART}#prod#3")
    assert registry.promote("v0.2.0", "prod", root=tmp_path / "third")["tag"] == f"{ART}#prod#4"
