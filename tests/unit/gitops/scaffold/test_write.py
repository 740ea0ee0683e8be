"""`loopline init` writes a committed instance, or nothing (gitops/scaffold/write.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from loopline.config import defaults
from loopline.core.errors import LooplineError
from loopline.gitops import scaffold
from loopline.gitops.scaffold import pins, sources, write
from tests.helpers import REPO
from tests.helpers.churn import churn_frame
from tests.helpers.commands import loopline, sh

GENERIC_GROUPS = ("features", "model", "search", "export", "serve", "monitor")


def test_a_failure_after_writing_removes_everything(tmp_path: Path, churn_csv: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    real = write.git

    def failing(root: Path, *args: str, **kwargs):  # noqa: ANN003, ANN202
        if args[0] == "commit":
            raise LooplineError("git commit failed: no identity")
        return real(root, *args, **kwargs)

    monkeypatch.setattr(write, "git", failing)
    with pytest.raises(LooplineError, match="git commit failed"):
        scaffold.run(tmp_path / "new" / "inst", churn_csv, "churn")
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(LooplineError, match="git commit failed"):
        scaffold.run(tmp_path / "empty", churn_csv, "churn")
    assert (tmp_path / "empty").is_dir() and not list((tmp_path / "empty").iterdir())


def test_init_makes_a_committed_instance(tmp_path: Path, churn_csv: Path) -> None:
    res = loopline("init", "Churn Model", "--data", str(churn_csv), "--target", "churn", "--json",
                   cwd=tmp_path)
    doc = json.loads(res.stdout)
    repo = tmp_path / "Churn Model"
    assert doc["path"] == str(repo) and doc["artifact"] == "churn-model"
    assert doc["target"] == "churn" and doc["positive_class"] == "yes"  # the minority
    assert doc["columns"] == list(churn_frame(1).columns)
    assert sh("git", "rev-parse", "HEAD", cwd=repo).stdout.strip() == doc["commit"]
    assert sh("git", "status", "--porcelain", "--ignored=no", cwd=repo).stdout == ""
    assert sh("git", "branch", "--show-current", cwd=repo).stdout.strip() == "main"

    assert (repo / "data" / "churn.csv").read_bytes() == churn_csv.read_bytes()
    data = yaml.safe_load((repo / "conf" / "data" / "churn.yaml").read_text())
    assert data["source"] == "data/churn.csv" and data["positive_class"] == "yes"
    assert data["schema"]["columns"]["plan"]["nullable"] is True
    assert sorted(str(p.relative_to(repo / "conf")) for p in (repo / "conf").rglob("*")
                  if p.is_file()) == ["config.yaml", "data/churn.yaml"]  # the rest: loopline's
    ours, ref = (yaml.safe_load((r / "params.yaml").read_text()) for r in (repo, REPO))
    for group in GENERIC_GROUPS:
        assert ours[group] == ref[group], group
    assert ours["evaluate"] == {**ref["evaluate"], "slice_column": None}  # no slices yet
    gate = yaml.safe_load((defaults.DIR / "gate" / "default.yaml").read_text())
    assert ours["gate"] == gate  # margins over the class prior, not the reference's bounds
    assert json.loads((repo / "reports" / "champion.json").read_text()) == {
        "stage": "prod", "version": None}
    assert (repo / ".dvc" / "config").read_text() == write.DVC_CONFIG
    reference = (REPO / ".dvc" / "config").read_text().splitlines()
    assert all(line in reference for line in write.DVC_CONFIG.splitlines())
    assert (repo / ".gitignore").read_text().splitlines() == [
        "/.loopline/", "/logs/", "__pycache__/", ".venv/"]
    workflows = {rel: raw for rel, raw in sources.shared_files().items()
                 if rel.startswith(".github/")}
    assert workflows
    for rel, raw in workflows.items():  # the reference's, installing from the instance's lock
        assert (repo / rel).read_text() == pins.workflow_install(raw.decode())
        assert "uv sync" not in (repo / rel).read_text()
    assert doc["workflows"] == sorted(workflows)
    lock = (repo / pins.LOCK).read_text().splitlines()
    wheels = list((repo / pins.VENDOR).glob("loopline-*-py3-none-any.whl"))
    assert len(wheels) == 1 and f"./{pins.VENDOR}/{wheels[0].name}" in lock
    assert "install:" in (repo / "Makefile").read_text()
    assert os.access(repo / "scripts" / "deploy.sh", os.X_OK)
    assert "loopline run" in (repo / "README.md").read_text()
    loopline("params", "--check", cwd=repo)
