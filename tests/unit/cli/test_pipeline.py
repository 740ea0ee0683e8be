"""The pipeline commands (cli/pipeline.py): params, stage, schema; a bad value is named
and nothing is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.helpers import REPO
from tests.helpers.commands import loopline
from tests.helpers.instance import default_text, shadow_default


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


def test_estimator_parameter_typo_is_named(instance: Path) -> None:
    res = loopline("params", "+model.estimator.max_iterations=3", cwd=instance, check=False)
    assert res.returncode == 1
    assert "'max_iterations'" in res.stderr


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
