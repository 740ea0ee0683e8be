"""Composing conf/ with Hydra (config/compose.py): groups, overrides, DVC's own
composition byte for byte, the fingerprint, diff_keys."""

from __future__ import annotations

import copy

import pytest

from loopline.config.compose import compose, diff_keys
from loopline.config.pipeline import Distribution, check_estimator
from loopline.core.errors import LooplineError
from tests.helpers import REPO
from tests.helpers.config import _composed_text, composed, params_for

# ------------------------------------------------------------------------------ compose


def test_compose_default_is_hgb_random_credit():
    p = params_for()
    assert p.model.name == "hgb"
    assert p.model.estimator["_target_"] == "sklearn.ensemble.HistGradientBoostingClassifier"
    # ${seed} interpolations are resolved in the composed text
    assert p.model.estimator["random_state"] == 42
    assert p.data.split.seed == 42
    assert p.search.method == "random"
    assert p.data.target == "Status" and p.data.positive_class == "bad"
    assert list(p.data.schema_.columns)[0] == "Status"
    assert p.data.validation.max_missing_rate == pytest.approx(0.30)
    assert "${" not in _composed_text(())


def test_compose_seed_override_propagates_to_interpolations():
    p = params_for(["seed=7"])
    assert p.seed == 7
    assert p.data.split.seed == 7
    assert p.model.estimator["random_state"] == 7


def test_compose_model_rf():
    p = params_for(["model=rf"])
    assert p.model.name == "rf"
    assert p.model.estimator["_target_"] == "sklearn.ensemble.RandomForestClassifier"
    assert p.model.search_space["max_depth"] == [6, 10, None]
    assert p.model.search_space["max_features"] == ["sqrt", 0.5]
    assert check_estimator(p.model).__name__ == "RandomForestClassifier"


def test_compose_model_logreg_has_loguniform_distribution():
    p = params_for(["model=logreg"])
    assert p.model.name == "logreg"
    c = p.model.search_space["C"]
    assert isinstance(c, Distribution)
    assert (c.dist, c.low, c.high) == ("loguniform", 0.001, 100.0)
    assert check_estimator(p.model).__name__ == "LogisticRegression"


@pytest.mark.parametrize("search", ["grid", "halving", "random"])
def test_compose_search_groups(search):
    p = params_for([f"search={search}"])
    assert p.search.method == search
    # the model group is untouched by a search override
    assert p.model.name == "hgb"


def test_compose_features_knn_override():
    p = params_for(["features.numeric_imputer=knn", "features.knn_neighbors=3"])
    assert p.features.numeric_imputer == "knn"
    assert p.features.knn_neighbors == 3
    assert params_for().features.numeric_imputer == "median"


def test_compose_unknown_group_option_is_loopline_error():
    with pytest.raises(LooplineError, match=r"cannot compose conf/.*model/nope"):
        compose(REPO, ["model=nope"])


def test_compose_matches_committed_params_yaml():
    assert _composed_text(()) == (REPO / "params.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["model=rf"],
        ["model=logreg", "search=halving"],
        ["features.numeric_imputer=knn", "seed=7", "search.cv=3"],
        ["search=grid", "evaluate.slice_column=null"],
    ],
)
def test_compose_equals_dvc_hydra_dump_byte_for_byte(tmp_path, overrides):
    from dvc.utils.hydra import compose_and_dump

    out = tmp_path / "params.yaml"
    compose_and_dump(out, config_dir=str(REPO / "conf"), config_module=None,
                     config_name="config", plugins_path=str(tmp_path), overrides=list(overrides))
    dvc_bytes = out.read_bytes()
    ours = compose(REPO, overrides).encode("utf-8")
    assert ours == dvc_bytes


def test_editing_a_packaged_default_recomposes(tmp_path, monkeypatch):
    """The fingerprint that lets a no-op `loopline run` skip composing covers the defaults."""
    import shutil

    from loopline.config import compose as composing
    from loopline.config import defaults

    copy_dir = tmp_path / "defaults"
    shutil.copytree(defaults.DIR, copy_dir)
    monkeypatch.setattr(defaults, "DIR", copy_dir)
    before = composing._fingerprint(REPO, [])
    assert composing._fingerprint(REPO, []) == before
    gate = copy_dir / "gate" / "default.yaml"
    gate.write_text(gate.read_text().replace("roc_auc: 0.80", "roc_auc: 0.81"))
    assert composing._fingerprint(REPO, []) != before


# ---------------------------------------------------------------------------- diff_keys


def test_diff_keys_nested_changes_and_missing_keys():
    a = {"seed": 1, "model": {"name": "hgb", "estimator": {"max_iter": 200}}, "old": 1}
    b = copy.deepcopy(a)
    b["model"]["estimator"]["max_iter"] = 100
    b["new"] = {"x": 1}
    del b["old"]
    assert diff_keys(a, b) == ["model.estimator.max_iter", "new", "old"]


def test_diff_keys_identical_and_none_vs_missing():
    a = composed()
    assert diff_keys(a, copy.deepcopy(a)) == []
    assert diff_keys({"x": None}, {}) == ["x"]
    assert diff_keys({"x": [1, 2]}, {"x": [2, 1]}) == ["x"]
    assert diff_keys({"x": {"y": 1}}, {"x": 5}) == ["x"]


def test_diff_keys_between_compositions():
    keys = diff_keys(composed(), composed(["model=rf"]))
    assert "model.name" in keys
    assert "model.estimator._target_" in keys
    assert "model.search_space.learning_rate" in keys
    assert all(k.startswith("model.") for k in keys)
