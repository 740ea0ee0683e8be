"""The command line: fast help, one-line errors, no traceback, no partial outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import REPO, default_text, loopline, shadow_default


def test_help_and_version() -> None:
    res = loopline("--help", cwd=REPO)
    for cmd in ("params", "run", "stage", "metrics", "schema"):
        assert cmd in res.stdout
    assert loopline("--version", cwd=REPO).stdout.startswith("loopline ")


def test_not_a_repo_is_one_clear_line(tmp_path: Path) -> None:
    res = loopline("run", cwd=tmp_path, check=False)
    assert res.returncode == 1
    assert res.stderr.startswith("error: not a loopline repo")
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [("--verbose", "params"), ("run", "--verbose"), ("-v", "run"),
                                  ("params", "-v")])
def test_verbose_before_or_after_the_command_shows_the_traceback(tmp_path: Path,
                                                                 args: tuple[str, str]) -> None:
    res = loopline(*args, cwd=tmp_path, check=False)
    assert res.returncode == 1 and "Traceback" in res.stderr
    assert res.stderr.rstrip().splitlines()[-1].startswith("error: not a loopline repo")


def test_bad_config_value_names_the_key_and_writes_nothing(instance: Path) -> None:
    before = (instance / "params.yaml").read_text()
    res = loopline("params", "data.split.test_size=1.5", cwd=instance, check=False)
    assert res.returncode == 1
    assert "data.split.test_size" in res.stderr and "1.5" in res.stderr
    assert "Traceback" not in res.stderr
    assert (instance / "params.yaml").read_text() == before


def test_unknown_override_key_is_a_clear_error(instance: Path) -> None:
    res = loopline("params", "model=xgboost_nope", cwd=instance, check=False)
    assert res.returncode == 1
    assert res.stderr.startswith("error: cannot compose conf/")
    assert "xgboost_nope" in res.stderr


def test_unknown_estimator_fails_before_any_stage(instance: Path) -> None:
    res = loopline("run", "model.estimator._target_=sklearn.ensemble.NoSuchForest", cwd=instance, check=False)
    assert res.returncode == 1
    assert "unknown estimator" in res.stderr and "sklearn.ensemble.NoSuchForest" in res.stderr
    assert not (instance / "data/raw").exists()


def test_estimator_parameter_typo_is_named(instance: Path) -> None:
    res = loopline("params", "+model.estimator.max_iterations=3", cwd=instance, check=False)
    assert res.returncode == 1
    assert "'max_iterations'" in res.stderr


def test_missing_data_file(instance: Path) -> None:
    (instance / "data/credit_data.csv").unlink()
    res = loopline("run", "--json", cwd=instance, check=False)
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert doc["ok"] is False
    assert "data/credit_data.csv" in (doc["error"] or "")
    assert not (instance / "data/raw/data.parquet").exists()


def test_params_check_detects_drift(instance: Path) -> None:
    assert loopline("params", "--check", cwd=instance).returncode == 0
    shadow_default(instance, "features/default.yaml", default_text("features/default.yaml")
                   .replace("numeric_imputer: median", "numeric_imputer: knn"))
    res = loopline("params", "--check", cwd=instance, check=False)
    assert res.returncode == 1 and "features.numeric_imputer" in res.stderr
    doc = json.loads(loopline("params", "--check", "--json", cwd=instance, check=False).stdout)
    assert doc["changed"] and doc["changed_keys"] == ["features.numeric_imputer"]
    loopline("params", cwd=instance)
    assert loopline("params", "--check", cwd=instance).returncode == 0


def test_reference_params_yaml_is_in_sync_with_conf() -> None:
    res = loopline("params", "--check", cwd=REPO, check=False)
    assert res.returncode == 0, res.stderr


def test_stage_name_is_checked(instance: Path) -> None:
    res = loopline("stage", "deploy", cwd=instance, check=False)
    assert res.returncode == 2 and "unknown stage 'deploy'" in res.stderr


def test_schema_infer_round_trip(tmp_path: Path) -> None:
    shutil.copy(REPO / "data/credit_data.csv", tmp_path / "c.csv")
    res = loopline("schema", str(tmp_path / "c.csv"), "--target", "Status", cwd=tmp_path)
    assert "Income:" in res.stdout.replace('"', "")
    assert "categories" in res.stdout
    res = loopline("schema", str(tmp_path / "c.csv"), "--target", "Nope", cwd=tmp_path, check=False)
    assert res.returncode == 1 and "target 'Nope'" in res.stderr
