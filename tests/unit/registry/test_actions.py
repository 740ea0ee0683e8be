"""Register, promote and rollback (registry/actions.py) on hand-made repos."""

from __future__ import annotations

import hashlib

import pytest

from loopline.core.errors import LooplineError
from loopline.registry import actions as registry
from loopline.registry.tags import open_registry
from tests.helpers.registry_repo import ART, Repo, cli, git, message

# ----------------------------------------------------------------------------- register


def test_first_model_registers_with_its_metadata(repo: Repo) -> None:
    res = repo.register("a")
    commit = git(repo.path, "rev-parse", "HEAD")
    assert res["version"] == "v0.1.0" and res["tag"] == f"{ART}@v0.1.0"
    assert git(repo.path, "rev-parse", f"{ART}@v0.1.0^{{commit}}") == commit
    assert git(repo.path, "cat-file", "-t", f"{ART}@v0.1.0") == "tag"  # annotated
    meta = message(repo.path, f"{ART}@v0.1.0")
    assert meta["gate"]["verdict"] == "pass" and meta["gate"]["checks"][0]["name"] == "roc_auc"
    assert meta["metrics"]["label"] == "a"
    onnx = repo.files[commit]["model.onnx"]
    assert meta["model"]["onnx_sha256"] == hashlib.sha256(onnx).hexdigest()
    assert meta["data"]["raw_md5"] == "d" * 32 and meta["params_hash"] == "p" * 16
    assert meta["who"] == "registry tests <registry@loopline.invalid>"
    assert meta["when"].endswith("Z") and meta["seq"] == 1
    with pytest.raises(LooplineError, match=r"already has version credit-risk@v0\.1\.0"):
        registry.register(repo.path)
    assert repo.register("b", bump="major")["version"] == "v1.0.0"
    assert repo.register("c", bump="patch")["version"] == "v1.0.1"
    assert repo.register("d", version="v3.0.0")["version"] == "v3.0.0"
    assert repo.register("e")["version"] == "v3.1.0"


# ----------------------------------------------------------------- promote and rollback


def test_failed_gate_version_cannot_be_promoted_unless_forced_with_reason(repo: Repo) -> None:
    repo.register("good")
    repo.register("bad", verdict="fail")
    with pytest.raises(LooplineError, match=r"credit-risk@v0\.2\.0 did not pass its gate"):
        registry.promote("v0.2.0", "prod", root=repo.path)
    with pytest.raises(LooplineError, match="--force and --reason go together"):
        registry.promote("v0.2.0", "prod", root=repo.path, force=True)
    with pytest.raises(LooplineError, match=r"unknown version 'v9\.9\.9' of credit-risk: known "
                                            r"versions are v0\.2\.0, v0\.1\.0"):
        registry.promote("v9.9.9", "prod", root=repo.path)
    with pytest.raises(LooplineError, match="unknown stage 'qa': valid stages are staging, prod"):
        registry.promote("v0.1.0", "qa", root=repo.path)
    res = registry.promote("0.2.0", "prod", root=repo.path, force=True, reason="hotfix for INC-42")
    assert res["tag"] == f"{ART}#prod#1" and res["forced"]
    meta = message(repo.path, f"{ART}#prod#1")
    assert meta["action"] == "promote" and meta["forced"] and meta["reason"] == "hotfix for INC-42"
    assert meta["version"] == "v0.2.0" and meta["stage"] == "prod" and meta["who"] and meta["when"]
    events = registry.history(repo.path)
    assert [(e["event"], e["version"], e["forced"]) for e in events] == [
        ("promote", "v0.2.0", True), ("register", "v0.2.0", True), ("register", "v0.1.0", False)]
    assert events[0]["reason"] == "hotfix for INC-42"
    out = cli(repo.path, "history")
    assert out.exit_code == 0
    assert "promote (forced)" in out.stdout and "hotfix for INC-42" in out.stdout


def test_rollback_picks_the_last_gate_passed_version_and_skips_failed_ones(repo: Repo) -> None:
    for label, verdict in (("a", "pass"), ("b", "pass"), ("c", "fail"), ("d", "pass")):
        repo.register(label, verdict)
    with pytest.raises(LooplineError, match="nothing to roll back: no version assigned to prod"):
        registry.rollback("prod", root=repo.path)
    for v in ("v0.1.0", "v0.2.0", "v0.4.0"):
        registry.promote(v, "prod", root=repo.path)
    res = registry.rollback("prod", root=repo.path)
    assert (res["version"], res["previous"], res["tag"]) == ("v0.2.0", "v0.4.0", f"{ART}#prod#4")
    assert message(repo.path, f"{ART}#prod#4")["action"] == "rollback"
    assert registry.which("prod", root=repo.path)["version"] == "v0.2.0"
    assert registry.rollback("prod", root=repo.path)["version"] == "v0.1.0"
    with pytest.raises(LooplineError, match="nothing to roll back to: no version of credit-risk "
                                            r"earlier than v0\.1\.0 in prod passed its gate"):
        registry.rollback("prod", root=repo.path)
    with pytest.raises(LooplineError, match=r"v0\.3\.0 did not pass its gate"):
        registry.rollback("prod", to="v0.3.0", root=repo.path)
    res = registry.rollback("prod", to="v0.3.0", root=repo.path, force=True, reason="known good")
    assert res["forced"] and registry.which("prod", root=repo.path)["version"] == "v0.3.0"
    # the forced v0.3.0 is skipped: back to the last passed version below it
    assert registry.rollback("prod", root=repo.path)["version"] == "v0.2.0"
    prod = open_registry(repo.path).stage_assignments("prod")
    assert [a.n for a in prod] == [1, 2, 3, 4, 5, 6, 7]


def test_promoting_the_current_version_again_creates_nothing(repo: Repo) -> None:
    repo.register("a")
    registry.promote("v0.1.0", "staging", root=repo.path)
    res = registry.promote("v0.1.0", "staging", root=repo.path)
    assert not res["created"] and res["tag"] == f"{ART}#staging#1"
    assert repo.tags() == [f"{ART}#staging#1", f"{ART}@v0.1.0"]


def test_a_foreign_artifact_name_is_refused_naming_both(repo: Repo) -> None:
    repo.register("a")
    repo.model("b")
    both = r"'other-model@v9\.1\.0' names artifact 'other-model', but this repository's " \
           r"artifact is 'credit-risk'"
    with pytest.raises(LooplineError, match=both):
        registry.register(repo.path, version="other-model@v9.1.0")
    for call in (lambda: registry.promote("other-model@v9.1.0", "prod", root=repo.path),
                 lambda: registry.rollback("prod", to="other-model@v9.1.0", root=repo.path)):
        with pytest.raises(LooplineError, match=both):
            call()
    assert registry.register(repo.path, version=f"{ART}@v0.5.0")["version"] == "v0.5.0"
    assert registry.promote(f"{ART}@v0.1.0", "prod", root=repo.path)["tag"] == f"{ART}#prod#1"
    assert [t for t in repo.tags() if "other" in t] == []
