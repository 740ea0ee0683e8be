"""The workflows and `loopline ci` (gitops/ci.py): actionlint, what act is given, how its
log is read."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from loopline.core.errors import LooplineError
from loopline.gitops import ci
from tests.helpers import BIN, REPO

WORKFLOWS = REPO / ".github" / "workflows"


def test_workflows_pass_actionlint() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.stem for f in files} >= {"pr", "main", "release", "monitor"}
    res = subprocess.run(
        [str(BIN / "actionlint"), *map(str, files)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_workflow_run_steps_call_loopline_only() -> None:
    """No logic hidden in YAML: every step is one loopline, uv, make or script command."""
    for path in WORKFLOWS.glob("*.yml"):
        doc = ci.load_workflow(REPO, path.stem)
        for job in doc["jobs"].values():
            for step in job["steps"]:
                if "run" in step:
                    first = step["run"].strip().split()[0]
                    assert first in ("loopline", "make", "bash", "uv", "echo"), (
                        path.name,
                        step["run"],
                    )


def test_no_step_or_job_is_guarded_on_act() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        assert "env.ACT" not in path.read_text(), path.name


def test_every_action_of_the_workflows_runs_offline() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        doc = ci.load_workflow(REPO, path.stem)
        actions = ci.offline_actions(doc, path.stem)
        for job in doc["jobs"].values():
            for step in job["steps"]:
                uses = step.get("uses", "")
                if not uses or uses.startswith("actions/checkout@"):
                    continue
                name, _, ref = uses.partition("@")
                repo, sub = "/".join(name.split("/")[:2]), name.split("/")[2:]
                assert (actions[f"{repo}@{ref}"].joinpath(*sub) / "action.yml").is_file(), uses


def test_the_venv_is_cached_on_uv_lock_in_every_workflow_that_installs() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        for job in ci.load_workflow(REPO, path.stem)["jobs"].values():
            uses = [s.get("uses", "").partition("@")[0] for s in job["steps"]]
            runs = [s.get("run", "") for s in job["steps"]]
            if not any(r.startswith("uv sync") for r in runs):
                continue
            first = next(i for i, r in enumerate(runs) if r.startswith("uv sync"))
            restore, save = uses.index("actions/cache/restore"), uses.index("actions/cache/save")
            assert restore < first < save, path.name
            key = job["steps"][restore]["with"]["key"]
            assert "hashFiles('uv.lock')" in key and "py3.11" in key, path.name


def test_actions_cache_with_its_post_step_is_refused_with_the_alternative() -> None:
    doc = {"jobs": {"a": {"steps": [{"uses": "actions/cache@v5", "with": {"path": "x"}}]}}}
    with pytest.raises(LooplineError, match="actions/cache/restore"):
        ci.offline_actions(doc, "x")


def test_an_action_that_needs_the_network_is_refused_by_name() -> None:
    doc = {
        "jobs": {
            "build": {
                "steps": [{"uses": "actions/checkout@v5"}, {"uses": "docker/build-push-action@v6"}]
            }
        }
    }
    with pytest.raises(LooplineError, match="docker/build-push-action@v6"):
        ci.offline_actions(doc, "x")
    checkout_elsewhere = {
        "jobs": {
            "a": {"steps": [{"uses": "actions/checkout@v5", "with": {"repository": "acme/other"}}]}
        }
    }
    with pytest.raises(LooplineError, match="actions/checkout@v5"):
        ci.offline_actions(checkout_elsewhere, "x")


def test_events_are_the_ones_github_sends() -> None:
    info = {"branch": "feature", "sha": "a" * 40}
    name, pr = ci.event("pr", info, base="develop")
    assert name == "pull_request"
    assert pr["pull_request"]["base"]["ref"] == "develop"
    assert pr["pull_request"]["head"]["ref"] == "feature"
    assert ci.event("main", info)[1]["ref"] == "refs/heads/main"
    assert ci.event("release", info, tag="m#prod#3") == (
        "push",
        {"ref": "refs/tags/m#prod#3", "after": "a" * 40, "repository": {"default_branch": "main"}},
    )
    name, gone = ci.event("release", info, tag="m#prod#3", deleted=True)
    assert name == "delete" and gone["ref"] == "m#prod#3" and gone["ref_type"] == "tag"
    with pytest.raises(LooplineError, match="--tag"):
        ci.event("release", info)


DOC = {
    "jobs": {
        "build": {
            "steps": [
                {"uses": "actions/checkout@v5"},
                {"name": "repro", "id": "repro", "continue-on-error": True, "run": "x"},
                {"name": "gate", "run": "y"},
                {"name": "comment", "run": "z"},
            ]
        },
        "deploy": {"needs": "build", "steps": [{"name": "hook", "run": "h"}]},
    }
}


def _log(*lines: dict) -> list[str]:
    return [json.dumps(line) for line in lines]


def test_act_log_becomes_outcomes_with_skipped_steps_and_jobs() -> None:
    results: dict = {}
    notices: list[str] = []
    jobs: dict = {}
    for raw in _log(
        {
            "jobID": "build",
            "stage": "Main",
            "stepID": ["0"],
            "stepResult": "success",
            "executionTime": 2e9,
        },
        {
            "jobID": "build",
            "stage": "Main",
            "stepID": ["repro"],
            "stepResult": "failure",
            "executionTime": 1e9,
        },
        {
            "jobID": "build",
            "stage": "Main",
            "stepID": ["2"],
            "stepResult": "success",
            "executionTime": 0,
        },
        {"jobID": "build", "stage": "Post", "stepID": ["0"], "stepResult": "failure"},
        {"jobID": "build", "command": "notice", "arg": "built x, not deployed"},
        {"jobID": "build", "jobResult": "success"},
    ):
        ci._record(json.loads(raw), results, notices, jobs, echo=False)
    res = ci.summarize(DOC, "release", "push", {"steps": results, "jobs": jobs}, notices, 0)
    outcomes = [(s["job"], s["step"], s["outcome"]) for s in res["steps"]]
    assert outcomes == [
        ("build", "actions/checkout@v5", "success"),
        ("build", "repro", "failure (continued)"),
        ("build", "gate", "success"),
        ("build", "comment", "skipped"),
        ("deploy", "hook", "skipped"),
    ]
    assert res["jobs"] == {"build": "passed", "deploy": "skipped"}
    assert res["status"] == "skipped" and res["passed"]
    assert res["notices"] == ["notice: built x, not deployed"]


def test_a_failed_job_fails_the_run() -> None:
    log = {
        "steps": {("build", "0"): {"result": "failure", "seconds": 1.0}},
        "jobs": {"build": "failure"},
    }
    res = ci.summarize(DOC, "pr", "pull_request", log, [], 1)
    assert res["status"] == "failed" and not res["passed"]
    assert (
        ci.summarize(DOC, "pr", "pull_request", {"steps": {}, "jobs": {}}, [], 1)["status"]
        == "failed"
    )


def test_clone_is_clean_has_origin_refs_and_the_working_changes_only_when_asked(
    tmp_path: Path,
) -> None:
    def git(cwd: Path, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
        ).stdout.strip()

    origin, repo = tmp_path / "origin.git", tmp_path / "repo"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(tmp_path, "clone", "-q", str(origin), str(repo))
    (repo / "a.txt").write_text("one\n")
    git(repo, "add", "a.txt")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "one")
    git(repo, "push", "-q", "origin", "main")
    git(repo, "tag", "m@v0.1.0")
    git(repo, "checkout", "-qb", "feature")
    (repo / "a.txt").write_text("two\n")
    (repo / "new.txt").write_text("new\n")
    clean = tmp_path / "clean"
    clean.mkdir()
    info = ci.clone(repo, clean)
    assert info["branch"] == "feature" and info["origin"] == str(origin)
    assert (clean / "a.txt").read_text() == "one\n" and not (clean / "new.txt").exists()
    assert git(clean, "tag") == "m@v0.1.0"
    assert git(clean, "rev-parse", "origin/main") == git(repo, "rev-parse", "main")
    dirty = tmp_path / "dirty"
    dirty.mkdir()
    ci.clone(repo, dirty, dirty=True)
    assert (dirty / "a.txt").read_text() == "two\n" and (dirty / "new.txt").is_file()
    assert git(dirty, "status", "--porcelain") == ""


def test_the_summary_names_every_step_whole_and_the_verdict(capsys) -> None:  # noqa: ANN001
    from loopline.cli.tables import print_ci

    long = "Build its image once and push it to serve.image_registry (when configured)"
    print_ci({"workflow": "release", "event": "delete", "status": "skipped",
              "jobs": {"image": "passed", "deploy": "skipped"}, "seconds": 12.3,
              "steps": [{"job": "image", "step": long, "outcome": "success", "seconds": 1.2},
                        {"job": "deploy", "step": "hook", "outcome": "skipped", "seconds": None}],
              "notices": ["notice: built x, not deployed"], "artifacts": "/x/.loopline/ci/release"})
    out = capsys.readouterr().out
    assert long in out and "notice: built x, not deployed" in out
    assert "release: SKIPPED on delete (image passed, deploy skipped)" in out


def _entry(root: Path, files: dict[str, str], age: float = 0.0) -> Path:
    entry = root / "v" / "k"
    for rel, text in files.items():
        (entry / "files" / "ws" / rel).parent.mkdir(parents=True, exist_ok=True)
        (entry / "files" / "ws" / rel).write_text(text)
    (entry / "key").write_text("k")
    (entry / "manifest").write_text("")
    then = time.time() - age
    os.utime(entry / "manifest", (then, then))
    return entry


def test_a_recently_used_entry_gets_one_spare_of_hard_links(tmp_path: Path) -> None:
    entry = _entry(tmp_path, {".venv/bin/python": "py", ".venv/lib/m.py": "m"},
                   age=2 * ci.SPARE_SECONDS)  # saved long ago, restored just now
    os.utime(entry / "files" / "ws", (0, 0))
    (entry / "used").touch()
    (made,) = ci.make_spares(tmp_path)
    assert made.parent == entry / "spare" and not made.name.startswith(".")
    for rel in (".venv/bin/python", ".venv/lib/m.py"):
        assert (made / rel).stat().st_ino == (entry / "files" / "ws" / rel).stat().st_ino
    assert (made / ".venv").stat().st_ino != (entry / "files" / "ws" / ".venv").stat().st_ino
    assert ci.make_spares(tmp_path) == [] and made.is_dir()  # one is enough, and it is new


def test_spares_of_an_idle_entry_are_dropped_and_not_made_again(tmp_path: Path) -> None:
    entry = _entry(tmp_path, {".venv/a": "a"}, age=2 * ci.SPARE_SECONDS)
    old = entry / "spare" / "1"
    (old / ".venv").mkdir(parents=True)
    os.utime(old, (0, 0))
    assert ci.make_spares(tmp_path) == []
    assert list((entry / "spare").iterdir()) == []


def test_background_work_is_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_CI_CACHE", str(tmp_path / "cache"))
    gone = tmp_path / "run"
    (gone / "deep").mkdir(parents=True)
    ci._background(["sh", "-c", f"sleep 0.5 && rm -rf {gone}"])
    assert not ci.wait_background(timeout=0.1)  # the lock is held from the start
    assert ci.wait_background(timeout=30) and not gone.exists()


def _trash(tmp_path: Path, paths: str, trash: bool = True) -> str:
    ws = tmp_path / "ws"
    env = {"PATH": os.environ["PATH"], "INPUT_PATH": paths, "GITHUB_WORKSPACE": str(ws)}
    if trash:
        env["LOOPLINE_CI_TRASH"] = str(tmp_path / "trash")
    res = subprocess.run(["node", str(ci.ACTIONS_DIR / "trash" / "post.js")], env=env,
                         capture_output=True, text=True, check=True)
    return res.stdout


def test_trash_moves_the_workspace_paths_out_and_leaves_others(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    for rel in (".venv/bin/python", "build/x", "keep/y"):
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text("x")
    out = _trash(tmp_path, ".venv/\n~/.local/share/uv/python\nkeep/*\n../ws/build\nmissing\n")
    assert not (ws / ".venv").exists() and (ws / "keep" / "y").is_file()
    assert (ws / "build" / "x").is_file()  # "..": not a path of the workspace as given
    (moved,) = (tmp_path / "trash").iterdir()
    assert moved.name.endswith(".venv") and (moved / "bin" / "python").is_file()
    assert ".venv: moved out of the workspace" in out
    assert "nothing moved" in _trash(tmp_path, "build", trash=False)
    assert (ws / "build" / "x").is_file()


def test_the_trash_action_has_a_stand_in_where_node_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    def mapped(cmd: list[str]) -> str:
        i = next(i for i, a in enumerate(cmd) if a.startswith("loopline/trash@v1="))
        assert cmd[i - 1] == "--local-repository"
        return cmd[i].partition("=")[2]

    def command() -> list[str]:
        return ci.act_command(tmp_path, "pr", "pull_request", tmp_path / "e.json", tmp_path, {}, set())

    with_node = Path(mapped(command()))
    real = shutil.which
    monkeypatch.setattr(ci.shutil, "which", lambda n, **kw: None if n == "node" else real(n, **kw))
    without = Path(mapped(command()))
    assert with_node == ci.ACTIONS_DIR / "trash" and without == with_node / "without-node"
    for folder in (with_node, without):
        doc = yaml.safe_load((folder / "action.yml").read_text())
        assert set(doc["inputs"]) == {"path"}, folder
    assert yaml.safe_load((with_node / "action.yml").read_text())["runs"]["post"] == "post.js"
