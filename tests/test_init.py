"""`loopline init`: package templates equal the reference, refusals, and a scaffold that runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import FAST_SEARCH, REPO, loopline, ran_stages, sh
from loopline.core.errors import LooplineError
from loopline.gitops import scaffold

STAGES = {"ingest", "validate", "prepare", "train", "evaluate", "export", "gate"}
GENERIC_GROUPS = ("features", "model", "search", "evaluate", "export", "gate", "serve")


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


# ------------------------------------------------------------------ templates (fast)


def test_templates_are_byte_identical_to_the_reference() -> None:
    templates = scaffold.instance_templates()
    assert "dvc.yaml" in templates and "conf/config.yaml" in templates
    differ = [rel for rel, raw in templates.items()
              if not (REPO / rel).is_file() or (REPO / rel).read_bytes() != raw]
    assert not differ, f"package templates differ from the reference instance: {differ} " \
                       "(copy the root files into src/loopline/templates/)"


def test_every_reference_file_has_a_template() -> None:
    reference = {"dvc.yaml", "conf/config.yaml"} | {
        str(p.relative_to(REPO)) for g in GENERIC_GROUPS for p in (REPO / "conf" / g).rglob("*")
        if p.is_file()}
    missing = sorted(reference - set(scaffold.instance_templates()))
    assert not missing, f"reference files without a package template: {missing}"


def test_no_dvc_yaml_inside_the_package() -> None:
    """DVC collects every dvc.yaml of a repo: one under src/ would break the root pipeline."""
    assert not list((REPO / "src").rglob("dvc.yaml"))


def _tmpl(rel: str) -> str:
    return scaffold.instance_templates()[rel].decode()


def test_dvc_yaml_loses_only_the_framework_sources() -> None:
    before, after = yaml.safe_load(_tmpl("dvc.yaml")), yaml.safe_load(
        scaffold.render_dvc_yaml(_tmpl("dvc.yaml")))
    for name, stage in before["stages"].items():
        kept = [d for d in stage["deps"] if not d.startswith("src/loopline/")]
        assert after["stages"][name] == {**stage, "deps": kept}
    assert after["plots"] == before["plots"]


def test_gate_and_evaluate_lose_the_slices_only() -> None:
    gate = yaml.safe_load(_tmpl("conf/gate/default.yaml"))
    assert yaml.safe_load(scaffold.render_gate(_tmpl("conf/gate/default.yaml"))) == {
        **gate, "slices": {"min": {}, "max_gap": {}}}
    ev = yaml.safe_load(_tmpl("conf/evaluate/default.yaml"))
    assert yaml.safe_load(scaffold.render_evaluate(_tmpl("conf/evaluate/default.yaml"))) == {
        **ev, "slice_column": None}


def test_config_gets_the_data_option_and_artifact() -> None:
    plan = scaffold.Plan(dest=Path("x"), data_file=Path("d.csv"), data_name="churn",
                         artifact="churn-model", target="y", positive_class="1",
                         classes={"0": 2, "1": 1}, rows=3, schema={}, example={})
    before = yaml.safe_load(_tmpl("conf/config.yaml"))
    after = yaml.safe_load(scaffold.render_config(_tmpl("conf/config.yaml"), plan))
    defaults = [{"data": "churn"} if isinstance(d, dict) and "data" in d else d
                for d in before["defaults"]]
    assert after == {**before, "defaults": defaults, "artifact": "churn-model"}


def test_a_changed_template_fails_loudly() -> None:
    with pytest.raises(RuntimeError, match="conf/gate slices"):
        scaffold.render_gate("min: {roc_auc: 0.8}\n")


@pytest.mark.parametrize(("dirname", "artifact"), [
    ("My Project", "my-project"), ("churn_2024", "churn-2024"), ("x", "x"),
    ("123", "model"), ("9Lives", "lives"), ("credit-risk", "credit-risk")])
def test_default_artifact_name(tmp_path: Path, dirname: str, artifact: str) -> None:
    assert scaffold.artifact_name(tmp_path / dirname) == artifact


def test_positive_class_defaults_to_the_minority() -> None:
    assert scaffold.positive_class({"no": 7, "yes": 3}, "y", None) == "yes"
    assert scaffold.positive_class({"b": 5, "a": 5}, "y", None) == "a"  # ties: by name
    assert scaffold.positive_class({"no": 7, "yes": 3}, "y", "no") == "no"


def test_workflow_templates_are_optional(tmp_path: Path) -> None:
    assert scaffold.workflow_templates(tmp_path) == {}
    (tmp_path / "github" / "workflows").mkdir(parents=True)
    assert scaffold.workflow_templates(tmp_path) == {}
    (tmp_path / "github" / "workflows" / "pr.yml").write_text("on: pull_request\n")
    assert scaffold.workflow_templates(tmp_path) == {
        ".github/workflows/pr.yml": b"on: pull_request\n"}


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
    real = scaffold._cmd

    def failing(what: str, args: list[str], cwd: Path) -> str:
        if what == "git commit":
            raise LooplineError("git commit failed: no identity")
        return real(what, args, cwd)

    monkeypatch.setattr(scaffold, "_cmd", failing)
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
    for rel in ("conf/features/default.yaml", "conf/model/hgb.yaml", "conf/search/halving.yaml",
                "conf/export/default.yaml", "conf/serve/default.yaml"):
        assert (repo / rel).read_bytes() == (REPO / rel).read_bytes(), rel
    assert json.loads((repo / "reports" / "champion.json").read_text()) == {
        "stage": "prod", "version": None}
    assert (repo / ".dvc" / "config").read_text() == scaffold.DVC_CONFIG
    reference = (REPO / ".dvc" / "config").read_text().splitlines()
    assert all(line in reference for line in scaffold.DVC_CONFIG.splitlines())
    assert (repo / ".gitignore").read_text().splitlines() == [
        "/.loopline/", "/logs/", "__pycache__/", ".venv/"]
    workflows = scaffold.workflow_templates()
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
    (repo / "conf" / "search" / "random.yaml").write_text(FAST_SEARCH)
    ev = repo / "conf" / "evaluate" / "default.yaml"
    ev.write_text(ev.read_text().replace("n_repeats: 5", "n_repeats: 2"))
    loopline("params", cwd=repo)
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
