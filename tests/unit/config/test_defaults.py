"""loopline's packaged defaults (config/defaults): the only copy of the generic conf groups."""

from __future__ import annotations

import pytest
import yaml

from loopline.config.compose import diff_keys
from tests.helpers import REPO
from tests.helpers.config import composed

GENERIC_GROUPS = ("features", "model", "search", "evaluate", "export", "gate", "serve", "monitor")


def _leaves(data: object, prefix: str = "") -> dict[str, object]:
    if isinstance(data, dict) and data:
        return {k: v for key, val in data.items() for k, v in _leaves(val, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): data}


def test_generic_groups_live_only_in_the_package():
    from loopline.config import defaults

    assert sorted(p.name for p in defaults.DIR.iterdir() if p.is_dir() and p.name != "__pycache__"
                  ) == sorted(GENERIC_GROUPS)
    own = sorted(str(p.relative_to(REPO / "conf")) for p in (REPO / "conf").rglob("*.yaml"))
    assert own == ["config.yaml", "data/credit.yaml", "evaluate/credit.yaml", "gate/credit.yaml",
                   "simulate/credit.yaml"]
    shadowed = [rel for rel in own if (defaults.DIR / rel).is_file()]
    assert not shadowed, f"conf/ copies packaged defaults: {shadowed}"
    conf = yaml.safe_load((REPO / "conf" / "config.yaml").read_text())
    assert conf["hydra"]["searchpath"] == [defaults.SEARCHPATH]


@pytest.mark.parametrize("rel", ["evaluate/credit.yaml", "gate/credit.yaml"])
def test_a_reference_option_holds_only_what_differs_from_the_default(rel):
    """conf/<group>/credit.yaml starts from the packaged default and sets only other values."""
    from loopline.config import defaults

    own = yaml.safe_load((REPO / "conf" / rel).read_text())
    assert own.pop("defaults") == ["default", "_self_"]
    generic = _leaves(yaml.safe_load((defaults.DIR / rel.split("/")[0] / "default.yaml").read_text()))
    same = [k for k, v in _leaves(own).items() if k in generic and generic[k] == v]
    assert own and not same, f"conf/{rel} repeats default values: {same}"


def test_the_reference_differs_from_the_generic_defaults_by_its_bounds_and_slices():
    """The generic gate's bounds are margins over the class prior; the reference adds the
    absolute bounds its data set has earned, its champion metrics and its slices."""
    keys = diff_keys(composed(["evaluate=default", "gate=default"]), composed())
    assert keys == ["evaluate.slice_column", "gate.champion.metrics", "gate.max.log_loss",
                    "gate.min.recall", "gate.min.roc_auc", "gate.slices.max_gap.roc_auc",
                    "gate.slices.min.roc_auc"]
    assert composed(["evaluate=default"])["evaluate"]["slice_column"] is None
