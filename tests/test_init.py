"""`loopline init`: one copy of the shared files, refusals, and a scaffold that runs (also
from a built wheel)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from conftest import BIN, REPO, fast_settings, loopline, ran_stages, sh
from loopline.core.errors import LooplineError
from loopline.core.names import NAME_RE
from loopline.gitops import scaffold
from loopline.gitops.scaffold import plan, render, sources, write
from loopline.gitops.scaffold.plan import Plan

STAGES = {"ingest", "validate", "prepare", "train", "evaluate", "export", "gate"}
GENERIC_GROUPS = ("features", "model", "search", "export", "serve", "monitor")


def churn_frame(n: int = 2000, seed: int = 7) -> pd.DataFrame:
    """Customer churn with a strong signal (income, tenure, plan), noise columns and gaps.

    2,000 rows rather than a few hundred: the gate's drift tests compare the training split
    with the held-out split, and on a held-out split of ~100 rows sampling noise alone
    pushes Wasserstein distances past their 0.1 threshold.
    """
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 15, n).round(1)
    tenure = rng.integers(0, 120, n)
    balance = rng.gamma(2.0, 500.0, n).round(2)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.4, 0.35, 0.25])
    logit = (-1.5 - 0.07 * (tenure - 60) + 0.12 * (50 - income) + 2.5 * (plan == "basic")
             - 2.0 * (plan == "pro") + 0.0004 * (balance - 1000))
    df = pd.DataFrame({
        "income": income, "tenure": tenure, "balance": balance, "plan": plan,
        "region": rng.choice(["north", "south", "east", "west"], n),
        "channel": rng.choice(["web", "store", "phone"], n),
        "paperless": rng.choice(["no", "yes"], n),
        "churn": np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no"),
    })
    df.loc[rng.random(n) < 0.1, "income"] = np.nan
    df.loc[rng.random(n) < 0.05, "plan"] = None
    df.loc[rng.random(n) < 0.05, "channel"] = None
    return df


@pytest.fixture()
def churn_csv(tmp_path: Path) -> Path:
    path = tmp_path / "churn.csv"
    churn_frame(400).to_csv(path, index=False)
    return path


# ------------------------------------------------- the shared files, one copy (fast)


def test_shared_files_are_read_where_they_are_in_a_checkout() -> None:
    """dvc.yaml, conf/config.yaml and the workflows exist once: the reference's, at the root."""
    root, names = sources.locate()
    assert Path(root) == REPO and names == {rel: rel for rel in sources.SHIPPED}
    shared = sources.shared_files()
    assert {"dvc.yaml", "conf/config.yaml", ".github/workflows/pr.yml"} <= set(shared)
    assert shared == {rel: (REPO / rel).read_bytes() for rel in shared}


def test_no_copies_of_them_in_the_package_source() -> None:
    """The wheel's copies are made by the build (force-include), never committed."""
    tracked = sh("git", "ls-files", "src/loopline/gitops", cwd=REPO).stdout.split()
    assert not [f for f in tracked if not f.endswith(".py")], tracked


def test_the_wheel_build_copies_exactly_the_shared_files() -> None:
    """pyproject.toml's force-include is the map that sources.locate reads a wheel by."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    forced = project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert forced == {rel: f"loopline/gitops/{sources.TEMPLATES}/{name}"
                      for rel, name in sources.SHIPPED.items()}


def test_no_dvc_yaml_inside_the_package() -> None:
    """DVC collects every dvc.yaml of a repo: one under src/ would break the root pipeline."""
    assert not list((REPO / "src").rglob("dvc.yaml"))


def _shared(rel: str) -> str:
    return sources.shared_files()[rel].decode()


def test_dvc_yaml_loses_only_the_framework_sources() -> None:
    before, after = yaml.safe_load(_shared("dvc.yaml")), yaml.safe_load(
        render.render_dvc_yaml(_shared("dvc.yaml")))
    for name, stage in before["stages"].items():
        kept = [d for d in stage["deps"] if not d.startswith("src/loopline/")]
        assert after["stages"][name] == {**stage, "deps": kept}
    assert after["plots"] == before["plots"]


PLAN = Plan(dest=Path("x"), data_file=Path("d.csv"), data_name="churn", artifact="churn-model",
            target="y", positive_class="1", classes={"0": 2, "1": 1}, rows=3, schema={},
            example={})


def test_config_gets_the_data_option_artifact_and_the_generic_defaults() -> None:
    """The reference's own options (evaluate: credit, gate: credit) give way to loopline's."""
    before = yaml.safe_load(_shared("conf/config.yaml"))
    after = yaml.safe_load(render.render_config(_shared("conf/config.yaml"), PLAN))
    assert render.own_options(_shared("conf/config.yaml")) == [("evaluate", "credit"),
                                                               ("gate", "credit")]
    new = {"data": "churn", "evaluate": "default", "gate": "default"}
    defaults = [{k: new.get(k, v) for k, v in d.items()} if isinstance(d, dict) else d
                for d in before["defaults"]]
    assert after == {**before, "defaults": defaults, "artifact": "churn-model"}
    assert render.own_options(render.render_config(_shared("conf/config.yaml"), PLAN)) == []


def test_a_changed_template_fails_loudly() -> None:
    with pytest.raises(RuntimeError, match="conf/config.yaml artifact"):
        render.render_config("# header\ndefaults:\n  - data: credit\n", PLAN)
    with pytest.raises(RuntimeError, match="no src/loopline dependencies"):
        render.render_dvc_yaml("stages: {}\n")


@pytest.mark.parametrize(("dirname", "artifact"), [
    ("My Project", "my-project"), ("churn_2024", "churn-2024"), ("x", "x"),
    ("123", "model"), ("9Lives", "lives"), ("credit-risk", "credit-risk")])
def test_default_artifact_name(tmp_path: Path, dirname: str, artifact: str) -> None:
    assert plan.artifact_name(tmp_path / dirname) == artifact


@given(st.text())
def test_a_slug_follows_the_name_rule(text: str) -> None:
    s = plan.slug(text)
    assert s == "" or NAME_RE.match(s)


def test_positive_class_defaults_to_the_minority() -> None:
    assert plan.positive_class({"no": 7, "yes": 3}, "y", None) == "yes"
    assert plan.positive_class({"b": 5, "a": 5}, "y", None) == "a"  # ties: by name
    assert plan.positive_class({"no": 7, "yes": 3}, "y", "no") == "no"


def test_workflows_are_optional(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    for rel in sources.REQUIRED:
        (tmp_path / rel).write_text("x: 1\n")
    where = (tmp_path, {rel: rel for rel in sources.SHIPPED})
    assert set(sources.shared_files(where)) == set(sources.REQUIRED)
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    assert set(sources.shared_files(where)) == set(sources.REQUIRED)
    (tmp_path / ".github" / "workflows" / "pr.yml").write_text("on: pull_request\n")
    assert sources.shared_files(where)[".github/workflows/pr.yml"] == b"on: pull_request\n"
    (tmp_path / "dvc.yaml").unlink()
    with pytest.raises(LooplineError, match="dvc.yaml is missing"):
        sources.shared_files(where)


# ----------------------------------------------------------------------- refusals


def _refused(tmp_path: Path, *args: str) -> str:
    res = loopline("init", *args, cwd=tmp_path, check=False)
    assert res.returncode == 1, res.stdout
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    return res.stderr


def test_refuses_a_non_empty_directory(tmp_path: Path, churn_csv: Path) -> None:
    (tmp_path / "inst").mkdir()
    (tmp_path / "inst" / "notes.txt").write_text("mine\n")
    err = _refused(tmp_path, "inst", "--data", str(churn_csv), "--target", "churn")
    assert "inst is not empty" in err
    assert [p.name for p in (tmp_path / "inst").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(("args", "message"), [
    (["--data", "missing.csv", "--target", "churn"], "data file not found: missing.csv"),
    (["--data", "{csv}", "--target", "nope"], "target 'nope' is not a column of the data"),
    (["--data", "{csv}", "--target", "churn", "--positive-class", "maybe"],
     "positive class 'maybe' is not a value of target 'churn' (values: no, yes)"),
    (["--data", "{csv}", "--target", "churn", "--name", "Bad_Name"],
     "--name 'Bad_Name' is not a valid artifact name"),
])
def test_refusals_name_the_problem_and_create_nothing(tmp_path: Path, churn_csv: Path,
                                                      args: list[str], message: str) -> None:
    args = [a.replace("{csv}", str(churn_csv)) for a in args]
    err = _refused(tmp_path, "new/inst", *args)
    assert message in err
    assert not (tmp_path / "new").exists()


def test_refuses_a_target_with_one_class_or_gaps(tmp_path: Path) -> None:
    df = churn_frame(100)
    df.assign(churn="no").to_csv(tmp_path / "one.csv", index=False)
    assert "target 'churn' has only one class ('no')" in _refused(
        tmp_path, "a", "--data", "one.csv", "--target", "churn")
    df.loc[[3, 5], "churn"] = None
    df.to_csv(tmp_path / "gaps.csv", index=False)
    assert "target 'churn' has 2 empty value(s)" in _refused(
        tmp_path, "b", "--data", "gaps.csv", "--target", "churn")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_refuses_labels_the_pipeline_would_misread(tmp_path: Path) -> None:
    df = churn_frame(100)
    df.assign(churn=df["churn"] == "yes").to_parquet(tmp_path / "bool.parquet")
    err = _refused(tmp_path, "a", "--data", "bool.parquet", "--target", "churn")
    assert re.search(r"target 'churn' holds '(True|False)', which loopline reads as '(true|false)'",
                     err)


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


# ------------------------------------------------------------------------ scaffold


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
    assert ours["gate"] == {**ref["gate"], "slices": {"min": {}, "max_gap": {}}}
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
    for rel, raw in workflows.items():
        assert (repo / rel).read_bytes() == raw
    assert doc["workflows"] == sorted(workflows)
    assert "loopline run" in (repo / "README.md").read_text()
    loopline("params", "--check", cwd=repo)


@pytest.mark.slow
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


@pytest.mark.slow
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
    for rel in doc["workflows"]:
        assert (repo / rel).read_bytes() == (REPO / rel).read_bytes(), rel
    sh(str(venv / "bin" / "loopline"), "params", "--check", cwd=repo, env=env)
    editable = tmp_path / "editable"
    loopline("init", str(editable), "--data", str(churn_csv), "--target", "churn", "--name", "inst",
             cwd=tmp_path)
    assert (repo / "params.yaml").read_bytes() == (editable / "params.yaml").read_bytes()
