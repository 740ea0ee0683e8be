"""The rollout plan (config/deploy.py): its schema, its packaged default and composition."""

from __future__ import annotations

import pytest

from loopline.config.deploy import DeployConfig, load_deploy
from loopline.core.errors import LooplineError
from tests.helpers.config import composed, error_of, params_for


def test_cutover_is_the_default_so_nothing_changes_unasked():
    params = params_for()
    assert params.deploy == DeployConfig() and not params.deploy.progressive
    assert composed()["deploy"]["strategy"] == "cutover"
    assert load_deploy(None) == DeployConfig()


def test_a_canary_plan_composes_from_overrides():
    deploy = params_for(["deploy.strategy=canary", "deploy.steps=[1,5,25,50,100]",
                         "deploy.criteria.p99_ms=40"]).deploy
    assert deploy.progressive and deploy.steps == [1, 5, 25, 50, 100]
    assert deploy.criteria.p99_ms == 40 and deploy.criteria.margin == 0.05
    plan = deploy.plan()
    assert plan["strategy"] == "canary" and plan["criteria"]["confidence"] == 0.95
    assert params_for(["deploy.strategy=blue_green"]).deploy.strategy == "blue_green"


@pytest.mark.parametrize(("deploy", "message"), [
    ({"strategy": "linear"},
     "deploy.strategy: Input should be 'cutover', 'canary' or 'blue_green'"),
    ({"steps": []}, "deploy.steps: steps must name at least one share"),
    ({"steps": [5, 5]}, "deploy.steps: steps must increase"),
    ({"steps": [0, 50]}, "deploy.steps: a step is a share of traffic in % (0 < step <= 100)"),
    ({"steps": [50, 120]}, "deploy.steps: a step is a share of traffic in %"),
    ({"min_records": 0}, "deploy.min_records: Input should be greater than or equal to 1"),
    ({"criteria": {"confidence": 1.0}}, "deploy.criteria.confidence: Input should be less than 1"),
    ({"criteria": {"max_error_rate": -0.1}}, "deploy.criteria.max_error_rate"),
    ({"rollback": True}, "deploy.rollback: Extra inputs are not permitted"),
])
def test_a_bad_plan_is_one_line_naming_the_key(deploy, message):
    assert message in error_of({**composed(), "deploy": deploy})
    with pytest.raises(LooplineError, match="invalid config in params.yaml: deploy."):
        load_deploy(deploy)


def test_deploy_must_be_a_mapping():
    with pytest.raises(LooplineError, match="deploy must be a mapping"):
        load_deploy([1, 5])
