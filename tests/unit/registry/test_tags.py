"""The registry read from Git tags (registry/tags.py): deleted assignments, fresh clones,
the order of events in one second, GTO's reading of the same tags."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loopline.registry import actions as registry
from loopline.registry.tags import open_registry
from tests.helpers.registry_repo import ART, Repo, cli, git


def test_which_cli_and_deleted_assignments(repo: Repo) -> None:
    repo.register("a")
    repo.register("b")
    res = cli(repo.path, "which", "prod")
    assert res.exit_code != 0 and str(res.exception) == "no version assigned to prod"
    for v in ("v0.1.0", "v0.2.0", "v0.1.0", "v0.2.0"):
        registry.promote(v, "prod", root=repo.path)
    out = cli(repo.path, "which", "prod", "--json")
    doc = json.loads(out.stdout)
    assert (doc["version"], doc["tag"], doc["n"]) == ("v0.2.0", f"{ART}#prod#4", 4)
    assert doc["commit"] == git(repo.path, "rev-parse", f"{ART}@v0.2.0^{{commit}}")
    assert doc["metadata"]["gate"]["verdict"] == "pass"
    git(repo.path, "tag", "-d", f"{ART}#prod#4")  # revert the newest assignment
    assert cli(repo.path, "which", "prod").stdout.strip() == "v0.1.0"
    git(repo.path, "tag", "-d", f"{ART}#prod#2")  # a gap: reported as deleted
    events = [(e["event"], e["tag"]) for e in registry.history(repo.path, stage="prod")]
    # a deleted tag's marker keeps what it assigned: shown where it was, as deleted
    assert events == [("deleted", f"{ART}#prod#4"), ("promote", f"{ART}#prod#3"),
                      ("deleted", f"{ART}#prod#2"), ("promote", f"{ART}#prod#1")]
    # a number once handed out is never handed out again
    assert registry.promote("v0.2.0", "prod", root=repo.path)["tag"] == f"{ART}#prod#5"
    hist = json.loads(cli(repo.path, "history", "--stage", "prod", "--json").stdout)
    assert [e["n"] for e in hist] == [5, 4, 3, 2, 1]
    assert [e["event"] for e in hist[1:4:2]] == ["deleted", "deleted"]
    assert hist[1]["version"] == "v0.2.0" and hist[3]["version"] == "v0.2.0"


def test_deleting_the_prod_tag_on_origin_reverts_which_in_a_fresh_clone(
        repo: Repo, origin: Path, tmp_path: Path) -> None:
    repo.register("a", push="origin")
    repo.register("b", push="origin")
    registry.promote("v0.1.0", "prod", root=repo.path, push="origin")
    registry.promote("v0.2.0", "prod", root=repo.path, push="origin")
    git(repo.path, "push", "-q", "origin", "main")
    git(repo.path, "push", "-q", "--delete", "origin", f"{ART}#prod#2")
    git(tmp_path, "clone", "-q", str(origin), "fresh")
    assert registry.which("prod", root=tmp_path / "fresh")["version"] == "v0.1.0"
    assert registry.which("prod", root=repo.path)["version"] == "v0.2.0"  # not fetched yet


def test_versions_and_events_made_in_the_same_second_are_ordered(
        repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000000 +0000")
    for label in ("a", "b", "c"):
        repo.register(label)
    for v in ("v0.3.0", "v0.1.0", "v0.2.0"):
        registry.promote(v, "prod", root=repo.path)
    reg = open_registry(repo.path)
    # tags written within one second get distinct, increasing tagger times (GTO's order)
    times = sorted(t.time for t in reg.all_tags())
    assert times == list(range(1700000000, 1700000006))
    assert [v.version for v in reg.sorted_versions()] == ["v0.1.0", "v0.2.0", "v0.3.0"]
    assert registry.which("prod", root=repo.path)["version"] == "v0.2.0"
    events = [(e["event"], e["version"]) for e in registry.history(repo.path)]
    assert events == [("promote", "v0.2.0"), ("promote", "v0.1.0"), ("promote", "v0.3.0"),
                      ("register", "v0.3.0"), ("register", "v0.2.0"), ("register", "v0.1.0")]
    assert registry.rollback("prod", root=repo.path)["version"] == "v0.1.0"
    assert [e["seq"] for e in registry.history(repo.path)] == [7, 6, 5, 4, 3, 2, 1]


def test_gto_reads_the_registry(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    gto_api = pytest.importorskip("gto.api")
    clock = iter(range(1_700_000_000, 1_700_001_000, 10))

    def tick() -> None:  # GTO orders by the one-second tagger time: give it distinct seconds
        monkeypatch.setenv("GIT_COMMITTER_DATE", f"{next(clock)} +0000")

    for label in ("a", "b", "c"):
        tick()
        repo.register(label)
    for v, stage in (("v0.1.0", "prod"), ("v0.2.0", "prod"), ("v0.3.0", "staging")):
        tick()
        registry.promote(v, stage, root=repo.path)
    shown = gto_api.show(str(repo.path))[ART]
    assert shown["version"] == "v0.3.0"
    assert shown["stage"] == {"prod": "v0.2.0", "staging": "v0.3.0"}
    tick()
    registry.rollback("prod", root=repo.path)
    assert gto_api.show(str(repo.path))[ART]["stage"]["prod"] == "v0.1.0"
    versions = gto_api.show(str(repo.path), name=ART)
    assert sorted(v["version"] for v in versions) == ["v0.1.0", "v0.2.0", "v0.3.0"]
    meta = json.loads(next(v for v in versions if v["version"] == "v0.2.0")["message"])
    assert meta["gate"]["verdict"] == "pass"
    events = gto_api.history(str(repo.path), artifact=ART)
    assert [(e["event"], e["ref"]) for e in events][:2] == [
        ("assignment", f"{ART}#prod#3"), ("assignment", f"{ART}#staging#1")]
    assert sum(e["event"] == "registration" for e in events) == 3
    assert os.environ["GIT_COMMITTER_DATE"]  # the clock was used
