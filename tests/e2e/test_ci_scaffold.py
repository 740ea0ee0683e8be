"""A new instance works on its own: `loopline init`, a first model pushed to a DVC remote,
then `loopline ci pr` and `ci main` run its workflows (nektos/act, a clean clone, a fresh
runner), loopline installed from the instance's requirements.lock and vendored wheel,
never from this checkout."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.helpers import BIN
from tests.helpers.churn import churn_frame
from tests.helpers.commands import loopline, sh
from tests.helpers.instance import fast_settings


def ci(root: Path, workflow: str) -> dict:
    env = {**os.environ, "UV_OFFLINE": "1"}  # uv installs from its cache: nothing downloaded
    res = sh(
        str(BIN / "loopline"),
        "ci",
        workflow,
        "--json",
        cwd=root,
        env=env,
        check=False,
        timeout=1200,
    )
    assert res.stdout.strip(), res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_init_then_ci_pr_and_main_run_from_a_clean_clone(tmp_path: Path) -> None:
    churn_frame().to_csv(tmp_path / "churn.csv", index=False)
    loopline("init", "churn", "--data", "churn.csv", "--target", "churn", cwd=tmp_path)
    repo = tmp_path / "churn"
    fast_settings(repo)
    loopline("params", cwd=repo)
    sh(str(BIN / "dvc"), "remote", "add", "-d", "store", str(tmp_path / "dvc-remote"), cwd=repo)
    loopline("run", cwd=repo)  # the first model, its outputs pushed to the DVC remote
    loopline("push", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-q", "-m", "fast search, first model", cwd=repo)

    pr = ci(repo, "pr")
    steps = {s["step"]: s for s in pr["steps"]}
    assert steps["Install loopline from requirements.lock"]["outcome"] == "success", pr
    assert steps["Reproduce the pipeline and the gate"]["outcome"] == "success", pr
    assert pr["status"] == "passed", pr
    assert not (repo / ".venv").exists()  # it ran in a clone

    main = ci(repo, "main")
    assert main["status"] == "passed", main
    tags = sh("git", "tag", cwd=repo).stdout.split()  # pushed to origin: this repository
    assert {"churn@v0.1.0", "churn#staging#1"} <= set(tags)
