"""The name rule (core/names.py), one for the config, `loopline init` and the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from loopline.core.errors import LooplineError
from tests.helpers import REPO
from tests.helpers.registry_repo import ART, DVC_YAML


@pytest.mark.parametrize(("name", "valid"), [
    ("credit-risk", True), ("a", True), ("churn2", True), ("a--b", True),
    ("Credit-Risk", False), ("credit_risk", False), ("a/b", False), ("2fast", False),
    ("ab-", False), ("-ab", False), ("é", False),
])
def test_config_init_and_the_registry_follow_one_name_rule(
        tmp_path: Path, name: str, valid: bool) -> None:
    """An artifact or stage name is accepted or refused alike by the config schema,
    ``loopline init --name`` and the registry's own params reader (core.names)."""
    from loopline.config.operations import RegistryConfig
    from loopline.config.params import Params
    from loopline.gitops.scaffold.plan import artifact_name
    from loopline.registry.settings import load_settings

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    root = tmp_path / "repo"
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "config.yaml").write_text("defaults: []\n")
    (root / "dvc.yaml").write_text(DVC_YAML)

    def registry_reads(params: str) -> None:
        (root / "params.yaml").write_text(params)
        load_settings(root)

    checks = {
        "config artifact": lambda: Params.model_validate({**raw, "artifact": name}),
        "config registry.stages": lambda: RegistryConfig(stages=[name]),
        "init --name": lambda: artifact_name(tmp_path / "new", name),
        "registry artifact": lambda: registry_reads(f"artifact: {name}\n"),
        "registry stages": lambda: registry_reads(
            f"artifact: {ART}\nregistry:\n  stages: [{json.dumps(name)}]\n"),
    }
    verdicts = {}
    for what, check in checks.items():
        try:
            check()
            verdicts[what] = True
        except (LooplineError, ValueError):  # pydantic's ValidationError is a ValueError
            verdicts[what] = False
    assert verdicts == dict.fromkeys(checks, valid)
