"""`loopline ci` drives nektos/act on a fresh clone of the reference instance: main.yml
installs loopline from uv.lock, pulls the model from the DVC remote (moto's S3 on
127.0.0.1, credentials from the secrets), registers and pushes the tags; pr.yml gives the
gate verdict that `loopline report` gives for the same branch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import BIN
from tests.helpers.commands import sh
from tests.helpers.reference import bare_origin, commit, reference_repo, remote_tags
from tests.helpers.s3 import REMOTE_BUCKET, S3, add_s3_remote, local_only_env, moto_s3

ARTIFACT = "credit-risk"


def ci_env() -> dict[str, str]:
    """127.0.0.1 only (see test_remote.py); uv installs from its cache, offline."""
    return {**local_only_env(), "UV_OFFLINE": "1"}


def run_ci(root: Path, *args: str, check: bool = True) -> dict:
    res = sh(str(BIN / "loopline"), "ci", *args, "--json", cwd=root, env=ci_env(), check=False,
             timeout=1200)
    assert res.stdout.strip(), res.stderr
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    if check:
        assert doc["status"] == "passed", (doc, res.stderr[-3000:])
    return doc


def outcomes(doc: dict) -> dict[str, str]:
    return {s["step"]: s["outcome"] for s in doc["steps"]}


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with moto_s3(REMOTE_BUCKET) as server:
        yield server


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory, s3: S3) -> Iterator[tuple[Path, Path]]:
    """A bare origin whose main has the pipeline's outputs, pushed to an S3 remote."""
    tmp = tmp_path_factory.mktemp("ci-main")
    up = reference_repo(tmp / "upstream")
    env = local_only_env()
    add_s3_remote(up, s3, "populated", env)
    sh(str(BIN / "loopline"), "run", cwd=up, env=env)
    sh(str(BIN / "loopline"), "push", cwd=up, env=env)
    commit(up, "outputs, pushed to the DVC remote")
    yield up, bare_origin(up, tmp / "origin.git")


def fresh_clone(origin: Path, dest: Path) -> Path:
    sh("git", "clone", "-q", str(origin), str(dest), cwd=origin)
    return dest


def test_ci_main_on_a_fresh_clone_pulls_the_model_registers_and_pushes_tags(
        populated: tuple[Path, Path], tmp_path: Path) -> None:
    _, origin = populated
    work = fresh_clone(origin, tmp_path / "work")
    doc = run_ci(work, "main")
    steps = outcomes(doc)
    assert doc["event"] == "push" and doc["jobs"] == {"register": "passed"}
    assert steps["Install loopline from uv.lock"] == "success"
    assert steps["Register the model of this commit"] == "success"
    assert {f"{ARTIFACT}@v0.1.0", f"{ARTIFACT}#staging#1"} <= remote_tags(origin)
    assert not (work / ".venv").exists()  # it ran in a clone, not here
    sh("git", "fetch", "-q", "--tags", "origin", cwd=work)
    which = sh(str(BIN / "loopline"), "which", "staging", cwd=work).stdout
    assert which.startswith("v0.1.0")
    again = run_ci(work, "main", check=False)  # the same commit cannot register twice
    assert again["status"] == "failed"
    assert outcomes(again)["Register the model of this commit"] == "failure"


def test_ci_pr_gives_the_gate_verdict_of_loopline_report(populated: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    _, origin = populated
    work = fresh_clone(origin, tmp_path / "work")
    sh("git", "checkout", "-q", "-b", "try-logreg", cwd=work)
    conf = work / "conf" / "config.yaml"
    conf.write_text(conf.read_text().replace("  - model: hgb", "  - model: logreg"))
    sh(str(BIN / "loopline"), "params", cwd=work)
    commit(work, "try logistic regression")
    doc = run_ci(work, "pr", check=False)
    assert doc["event"] == "pull_request"
    steps = outcomes(doc)
    assert steps["Reproduce the pipeline and the gate"] in ("success", "failure")  # FAIL: exit 1
    assert steps["Sticky pull-request comment"] == "skipped"
    kept = Path(doc["artifacts"]) / "loopline-reports" / "reports"
    ci_gate = json.loads((kept / "gate.json").read_text())
    assert f"gate **{ci_gate['verdict'].upper()}**" in (kept / "review.md").read_text()
    env = local_only_env()
    sh(str(BIN / "loopline"), "pull", cwd=work, env=env)
    sh(str(BIN / "loopline"), "run", cwd=work, env=env, check=False)
    local = json.loads(sh(str(BIN / "loopline"), "report", "--base", "origin/main", "--json",
                          cwd=work, env=env).stdout)
    assert local["gate"]["verdict"] == ci_gate["verdict"]
    assert doc["status"] == ("passed" if ci_gate["verdict"] == "pass" else "failed")
    passed = ci_gate["verdict"] == "pass"
    assert steps["Reproduce the pipeline and the gate"] == ("success" if passed else "failure")
    assert steps["Review report"] == "success"  # also after a FAIL


def test_ci_main_without_a_populated_remote_reproduces_and_registers(
        tmp_path: Path, s3: S3) -> None:
    up = reference_repo(tmp_path / "upstream")
    env = local_only_env()
    add_s3_remote(up, s3, "empty", env)
    sh(str(BIN / "loopline"), "run", cwd=up, env=env)
    commit(up, "outputs, never pushed")
    origin = bare_origin(up, tmp_path / "origin.git")
    work = fresh_clone(origin, tmp_path / "work")
    doc = run_ci(work, "main", check=False)
    # committed outputs are byte-stable: the fresh reproduction leaves the tree clean, so
    # register takes the commit
    assert doc["status"] == "passed", doc
    assert {f"{ARTIFACT}@v0.1.0", f"{ARTIFACT}#staging#1"} <= remote_tags(origin)
