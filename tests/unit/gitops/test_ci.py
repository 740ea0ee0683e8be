"""The workflows and `loopline ci` (gitops/ci.py): actionlint, loopline-only steps,
GitHub expressions."""

from __future__ import annotations

import subprocess

import pytest

from loopline.gitops import ci as local_ci
from tests.helpers import BIN, REPO

WORKFLOWS = REPO / ".github" / "workflows"


def test_workflows_pass_actionlint() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.stem for f in files} >= {"pr", "main", "release", "monitor"}
    res = subprocess.run([str(BIN / "actionlint"), *map(str, files)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_workflow_run_steps_call_loopline_only() -> None:
    """No logic hidden in YAML: every local step is one loopline (or make/script) command."""
    for path in WORKFLOWS.glob("*.yml"):
        doc = local_ci.load_workflow(REPO, path.stem)
        for job in doc["jobs"].values():
            for step in job["steps"]:
                if "run" in step:
                    first = step["run"].strip().split()[0]
                    assert first in ("loopline", "make", "bash"), (path.name, step["run"])


@pytest.mark.parametrize("expr, env, status, want", [
    ("!env.ACT", {"ACT": "true"}, False, False),
    ("!env.ACT", {}, False, True),
    ("always() && !env.ACT", {}, True, True),
    ("github.event_name != 'delete' || github.event.ref_type == 'tag'", {}, False, True),
    ("secrets.TOKEN_X || github.token", {"TOKEN_X": "abc"}, False, "abc"),
    ("failure()", {}, True, True),
])
def test_local_ci_evaluates_github_expressions(expr, env, status, want) -> None:
    ctx = local_ci.context(REPO, "release", env)
    assert local_ci.evaluate(expr, ctx, {"failed": status}) == want
