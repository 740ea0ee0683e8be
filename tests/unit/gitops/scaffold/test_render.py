"""The files `loopline init` makes from the reference's (gitops/scaffold/render.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from loopline.gitops.scaffold import render, sources
from loopline.gitops.scaffold.plan import Plan


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
