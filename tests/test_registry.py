"""The model registry on Git tags: register, promote, rollback, which, history, get, push.

Every test works on real git repositories in tmp_path (with a bare "origin"), made by
hand: a commit with params.yaml, dvc.yaml and conf/config.yaml (what makes a loopline repo),
a dvc.lock naming models/model.onnx and models/card.json, those files, reports/gate.json, and
the objects in .dvc/cache in DVC 3's layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from loopline.cli.registry import add_commands
from loopline.core.errors import LooplineError
from loopline.registry import actions as registry
from loopline.registry import write
from loopline.registry.fetch import get
from loopline.registry.tags import open_registry

ART = "credit-risk"
DVC_YAML = ("stages:\n  export:\n    cmd: loopline stage export\n    outs:\n"
            "    - models/card.json\n    - models/model.onnx\n")


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "registry tests")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "registry@loopline.invalid")
    monkeypatch.delenv("GIT_COMMITTER_DATE", raising=False)
    monkeypatch.delenv("GITHUB_ACTOR", raising=False)


def git(cwd: Path, *args: str) -> str:
    res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    assert res.returncode == 0, f"git {' '.join(args)}: {res.stderr}"
    return res.stdout.strip()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class Repo:
    """A minimal loopline repo: each ``model()`` call commits a new exported model."""

    def __init__(self, path: Path, stages: list[str] | None = None) -> None:
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", "main")
        params = f"artifact: {ART}\nseed: 42\n"
        if stages:
            params += "registry:\n  stages: [" + ", ".join(stages) + "]\n"
        (path / "params.yaml").write_text(params)
        (path / "dvc.yaml").write_text(DVC_YAML)
        (path / "conf").mkdir()
        (path / "conf" / "config.yaml").write_text("defaults: []\n")
        (path / ".dvc").mkdir()
        (path / ".dvc" / ".gitignore").write_text("/cache\n/tmp\n")
        (path / "models").mkdir()
        (path / "models" / ".gitignore").write_text("/model.onnx\n/card.json\n")
        (path / "reports").mkdir()
        self.files: dict[str, dict[str, bytes]] = {}

    def model(self, label: str, verdict: str = "pass") -> str:
        """Write, cache and commit a model labelled ``label``; return the commit."""
        onnx = f"onnx model {label}\n".encode() * 50
        sha = hashlib.sha256(onnx).hexdigest()
        card = json.dumps({"artifact": ART, "metrics": {"roc_auc": 0.8, "label": label},
                           "model_files": {"onnx": "models/model.onnx", "onnx_sha256": sha},
                           "data": {"raw_md5": "d" * 32}, "params_hash": "p" * 16}).encode()
        gate = {"verdict": verdict,
                "checks": [{"name": "roc_auc", "value": 0.8 if verdict == "pass" else 0.6,
                            "threshold": 0.7, "op": ">=", "passed": verdict == "pass",
                            "reason": "" if verdict == "pass" else "roc_auc 0.6 < 0.7"}],
                "champion": None, "candidate": {"onnx_sha256": sha}}
        (self.path / "models" / "model.onnx").write_bytes(onnx)
        (self.path / "models" / "card.json").write_bytes(card)
        (self.path / "reports" / "gate.json").write_text(json.dumps(gate))
        for data in (onnx, card):
            obj = self.path / ".dvc" / "cache" / "files" / "md5" / md5(data)[:2] / md5(data)[2:]
            obj.parent.mkdir(parents=True, exist_ok=True)
            obj.write_bytes(data)
        outs = "".join(f"    - path: models/{name}\n      hash: md5\n      md5: {md5(data)}\n"
                       f"      size: {len(data)}\n"
                       for name, data in (("card.json", card), ("model.onnx", onnx)))
        (self.path / "dvc.lock").write_text(
            "schema: '2.0'\nstages:\n  export:\n    cmd: loopline stage export\n    outs:\n" + outs)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", f"model {label}")
        commit = git(self.path, "rev-parse", "HEAD")
        self.files[commit] = {"model.onnx": onnx, "card.json": card}
        return commit

    def register(self, label: str, verdict: str = "pass", **kw) -> dict:
        self.model(label, verdict)
        if verdict != "pass":
            kw.setdefault("force", True)
            kw.setdefault("reason", f"test: {label} failed its gate")
        return registry.register(self.path, **kw)

    def tags(self) -> list[str]:
        return git(self.path, "tag", "-l").splitlines()


@pytest.fixture()
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repo")


@pytest.fixture()
def origin(tmp_path: Path, repo: Repo) -> Path:
    """A bare origin holding the repo's main branch."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(repo.path, "remote", "add", "origin", str(bare))
    return bare


def cli(root: Path, *args: str):
    app = typer.Typer()
    add_commands(app)
    return CliRunner().invoke(app, [*args, "--repo", str(root)])


def message(root: Path, tag: str) -> dict:
    return json.loads(git(root, "tag", "-l", "--format=%(contents)", tag))


# ----------------------------------------------------------------- register


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


def test_failed_or_missing_gate_refuses_register(repo: Repo) -> None:
    repo.model("a", verdict="fail")
    with pytest.raises(LooplineError,
                       match=r"reports/gate\.json: the gate failed \(roc_auc 0\.6 >= 0\.7\)"):
        registry.register(repo.path)
    with pytest.raises(LooplineError, match="--force and --reason go together"):
        registry.register(repo.path, force=True)
    (repo.path / "reports" / "gate.json").unlink()
    git(repo.path, "commit", "-qam", "no gate")
    with pytest.raises(LooplineError, match="gate report .* is missing"):
        registry.register(repo.path)
    assert repo.tags() == []


def test_dirty_tree_is_refused(repo: Repo) -> None:
    repo.model("a")
    (repo.path / "params.yaml").write_text(f"artifact: {ART}\nseed: 7\n")
    with pytest.raises(LooplineError, match=r"uncommitted changes \(params\.yaml\)"):
        registry.register(repo.path)
    assert repo.tags() == []


def test_workspace_model_not_from_dvc_lock_is_refused(repo: Repo) -> None:
    repo.model("a")
    (repo.path / "models" / "model.onnx").write_bytes(b"retrained but not committed")
    with pytest.raises(LooplineError, match=r"models/model\.onnx in the workspace .* is not the "
                                            r"one the committed dvc\.lock produced"):
        registry.register(repo.path)
    (repo.path / "models" / "model.onnx").unlink()
    with pytest.raises(LooplineError, match=r"models/model\.onnx is missing"):
        registry.register(repo.path)
    assert repo.tags() == []


# ------------------------------------------------------- promote and rollback


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


def test_stages_come_from_params(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", stages=["dev", "live"])
    repo.register("a")
    assert registry.promote("v0.1.0", "live", root=repo.path)["tag"] == f"{ART}#live#1"
    with pytest.raises(LooplineError, match="unknown stage 'prod': valid stages are dev, live"):
        registry.which("prod", root=repo.path)


# ------------------------------------------------------- which, deletion, order


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
    assert events == [("promote", f"{ART}#prod#3"), ("deleted", f"{ART}#prod#2"),
                      ("promote", f"{ART}#prod#1")]
    assert registry.promote("v0.2.0", "prod", root=repo.path)["tag"] == f"{ART}#prod#4"
    hist = json.loads(cli(repo.path, "history", "--stage", "prod", "--json").stdout)
    assert [e["n"] for e in hist] == [4, 3, 2, 1] and hist[2]["event"] == "deleted"


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
    assert {t.time for t in reg.versions.values()} == {1700000000}
    assert [v.version for v in reg.sorted_versions()] == ["v0.1.0", "v0.2.0", "v0.3.0"]
    assert registry.which("prod", root=repo.path)["version"] == "v0.2.0"
    events = [(e["event"], e["version"]) for e in registry.history(repo.path)]
    assert events == [("promote", "v0.2.0"), ("promote", "v0.1.0"), ("promote", "v0.3.0"),
                      ("register", "v0.3.0"), ("register", "v0.2.0"), ("register", "v0.1.0")]
    assert registry.rollback("prod", root=repo.path)["version"] == "v0.1.0"
    assert [e["seq"] for e in registry.history(repo.path)] == [7, 6, 5, 4, 3, 2, 1]


# ------------------------------------------------------------------ pushing


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
    with pytest.raises(LooplineError, match=r"remote origin moved: credit-risk#prod#1 already "
                                            r"exists there; fetch tags .* "
                                            r"\(local tag credit-risk#prod#1 removed\)"):
        registry.promote("v0.2.0", "prod", root=repo.path, push="origin")
    assert [t for t in repo.tags() if "#" in t] == []
    monkeypatch.undo()
    git(repo.path, "fetch", "-q", "origin", "--tags")
    res = registry.promote("v0.2.0", "prod", root=repo.path, push="origin")
    assert res["tag"] == f"{ART}#prod#2" and res["pushed"] == "origin"
    remote = git(repo.path, "ls-remote", "--tags", "origin")
    assert f"refs/tags/{ART}#prod#2" in remote


# ---------------------------------------------------------------------- get


def test_get_writes_the_right_bytes_and_fails_clearly(repo: Repo, tmp_path: Path) -> None:
    first = repo.register("a")["commit"]
    second = repo.register("b")["commit"]
    registry.promote("v0.1.0", "prod", root=repo.path)
    res = cli(repo.path, "get", "v0.2.0", "-o", str(tmp_path / "out2"), "--json")
    assert json.loads(res.stdout)["source"] == {"model.onnx": "cache", "card.json": "cache"}
    for name in ("model.onnx", "card.json"):
        assert (tmp_path / "out2" / name).read_bytes() == repo.files[second][name]
    get("prod", tmp_path / "out1", root=repo.path)
    assert (tmp_path / "out1" / "model.onnx").read_bytes() == repo.files[first]["model.onnx"]
    with pytest.raises(LooplineError, match=r"unknown version 'v9\.9\.9' of credit-risk"):
        get("v9.9.9", tmp_path / "out3", root=repo.path)
    with pytest.raises(LooplineError, match="no version assigned to staging"):
        get("staging", tmp_path / "out3", root=repo.path)
    onnx_md5 = md5(repo.files[first]["model.onnx"])
    cached = repo.path / ".dvc" / "cache" / "files" / "md5" / onnx_md5[:2] / onnx_md5[2:]
    cached.write_bytes(b"rot")
    with pytest.raises(LooplineError, match=rf"models/model\.onnx of credit-risk@v0\.1\.0 "
                                            rf"\(md5 {onnx_md5}\) is not in the DVC cache and "
                                            "cannot be fetched"):
        get("v0.1.0", tmp_path / "out4", root=repo.path)
    assert not (tmp_path / "out4" / "model.onnx").exists()


# --------------------------------------------------------------- the name rule


@pytest.mark.parametrize(("name", "valid"), [
    ("credit-risk", True), ("a", True), ("churn2", True), ("a--b", True),
    ("Credit-Risk", False), ("credit_risk", False), ("a/b", False), ("2fast", False),
    ("ab-", False), ("-ab", False), ("é", False),
])
def test_config_init_and_the_registry_follow_one_name_rule(
        tmp_path: Path, name: str, valid: bool) -> None:
    """An artifact or stage name is accepted or refused alike by the config schema,
    ``loopline init --name`` and the registry's own params reader (core.names)."""
    from loopline.config.operations import RegistryConfig
    from loopline.config.params import Params
    from loopline.gitops.scaffold.plan import artifact_name
    from loopline.registry.settings import load_settings

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    root = tmp_path / "repo"
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "config.yaml").write_text("defaults: []\n")
    (root / "dvc.yaml").write_text(DVC_YAML)

    def registry_reads(params: str) -> None:
        (root / "params.yaml").write_text(params)
        load_settings(root)

    checks = {
        "config artifact": lambda: Params.model_validate({**raw, "artifact": name}),
        "config registry.stages": lambda: RegistryConfig(stages=[name]),
        "init --name": lambda: artifact_name(tmp_path / "new", name),
        "registry artifact": lambda: registry_reads(f"artifact: {name}\n"),
        "registry stages": lambda: registry_reads(
            f"artifact: {ART}\nregistry:\n  stages: [{json.dumps(name)}]\n"),
    }
    verdicts = {}
    for what, check in checks.items():
        try:
            check()
            verdicts[what] = True
        except (LooplineError, ValueError):  # pydantic's ValidationError is a ValueError
            verdicts[what] = False
    assert verdicts == dict.fromkeys(checks, valid)


# --------------------------------------------------------------------- gto


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


def test_get_fetches_from_the_dvc_remote_when_the_cache_lacks_the_objects(
        tmp_path: Path) -> None:
    pytest.importorskip("dvc.api")
    repo = Repo(tmp_path / "repo")
    store = tmp_path / "dvc-store"
    (repo.path / ".dvc" / "config").write_text(
        f"[core]\n    remote = store\n['remote \"store\"']\n    url = {store}\n")
    commit = repo.register("a")["commit"]
    (repo.path / ".dvc" / "cache").rename(store)  # "dvc push", then a clean cache
    res = get("v0.1.0", tmp_path / "out", root=repo.path)
    assert res["source"] == {"model.onnx": "remote", "card.json": "remote"}
    for name in ("model.onnx", "card.json"):
        assert (tmp_path / "out" / name).read_bytes() == repo.files[commit][name]


def test_which_as_a_whole_command_imports_nothing_heavy(repo: Repo) -> None:
    repo.register("a")
    registry.promote("v0.1.0", "prod", root=repo.path)
    script = ("import sys\nfrom loopline.cli.app import app, main\n"
              "from loopline.cli.registry import add_commands\n"
              "if 'which' not in {c.name for c in app.registered_commands}:\n"
              "    add_commands(app)\n"
              f"sys.argv = ['loopline', 'which', 'prod', '-C', {str(repo.path)!r}]\n"
              "try:\n    main()\nfinally:\n"
              "    heavy = ('pydantic', 'dvc', 'git', 'pandas', 'hydra', 'yaml', 'rich')\n"
              "    print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert res.stdout.strip() == "v0.1.0"
    assert res.stderr.strip().splitlines()[-1] == "[]"
    bad = cli(repo.path, "history", "--limit", "x")
    assert bad.exit_code == 2 and "'x' is not a valid int" in bad.output
