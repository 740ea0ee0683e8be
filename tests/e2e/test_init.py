"""`loopline init`: the scaffold runs the whole pipeline, also from a built wheel."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from loopline.gitops.scaffold import pins, render, sources
from tests.helpers import BIN, REPO
from tests.helpers.churn import churn_frame
from tests.helpers.commands import loopline, ran_stages, sh
from tests.helpers.instance import fast_settings

STAGES = {"ingest", "validate", "prepare", "train", "evaluate", "export", "gate"}


def _shared(rel: str) -> str:
    return sources.shared_files()[rel].decode()


def test_the_scaffold_runs_end_to_end(tmp_path: Path) -> None:
    churn_frame().to_csv(tmp_path / "churn.csv", index=False)
    loopline("init", "churn", "--data", "churn.csv", "--target", "churn", cwd=tmp_path)
    repo = tmp_path / "churn"
    loopline("params", "--check", cwd=repo)
    fast_settings(repo)
    loopline("params", cwd=repo)
    sh("git", "add", "conf", cwd=repo)
    sh("git", "commit", "-q", "-am", "fast search", cwd=repo)

    doc = json.loads(loopline("run", "--json", cwd=repo).stdout)
    assert doc["ok"] and doc["gate"] == {"verdict": "pass", "failed": []}
    assert ran_stages(json.dumps(doc)) == STAGES
    assert doc["metrics"]["roc_auc"] >= 0.80
    for rel in ("reports/metrics.json", "reports/gate.json", "models/model.onnx", "models/card.md"):
        assert (repo / rel).is_file(), rel

    status = sh("git", "status", "--porcelain", cwd=repo).stdout.splitlines()
    staged = {line[3:] for line in status if line.startswith("A  ")}
    assert "dvc.lock" in staged  # core.autostage
    assert all(p == "dvc.lock" or p.endswith("/.gitignore") for p in staged), status
    untracked = [line[3:] for line in status if line.startswith("?? ")]
    assert "reports/metrics.json" in untracked
    assert all(p.startswith("reports/") for p in untracked), status
    assert len(staged) + len(untracked) == len(status), status  # no committed file changed


def test_init_from_a_built_wheel(tmp_path: Path, churn_csv: Path) -> None:
    """A wheel carries the shared files (and the packaged defaults): `loopline init` from a
    fresh venv makes an instance with dvc.yaml and the workflows, whose conf/ composes."""
    uv = str(BIN / "uv")
    sh(uv, "build", "--wheel", "-q", "-o", str(tmp_path / "dist"), cwd=REPO)
    wheel = next((tmp_path / "dist").glob("loopline-*.whl"))
    req = tmp_path / "requirements.txt"
    sh(uv, "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project", "-q", "-o",
       str(req), cwd=REPO)
    venv = tmp_path / "venv"
    sh(uv, "venv", "-q", str(venv), "--python", sys.executable, cwd=tmp_path)
    sh(uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "-r", str(req),
       str(wheel), cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    where = sh(str(venv / "bin" / "python"), "-c", "from loopline.gitops.scaffold import sources;"
               " print(sources.locate()[0])", cwd=tmp_path, env=env).stdout.strip()
    assert where.startswith(str(venv)) and where.endswith("loopline/gitops/templates")

    doc = json.loads(sh(str(venv / "bin" / "loopline"), "init", "inst", "--data", str(churn_csv),
                        "--target", "churn", "--json", cwd=tmp_path, env=env).stdout)
    repo = tmp_path / "inst"
    assert (repo / "dvc.yaml").read_text() == render.render_dvc_yaml(_shared("dvc.yaml"))
    assert doc["workflows"] == sorted(f".github/workflows/{p.name}"
                                      for p in (REPO / ".github" / "workflows").glob("*.yml"))
    for rel in doc["workflows"]:  # the reference's, installing from the instance's lock
        assert (repo / rel).read_text() == pins.workflow_install((REPO / rel).read_text()), rel
    sh(str(venv / "bin" / "loopline"), "params", "--check", cwd=repo, env=env)
    editable = tmp_path / "editable"
    loopline("init", str(editable), "--data", str(churn_csv), "--target", "churn", "--name", "inst",
             cwd=tmp_path)
    assert (repo / "params.yaml").read_bytes() == (editable / "params.yaml").read_bytes()
