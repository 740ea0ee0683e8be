"""Unit tests of loopline.config (pipeline, operations, params, compose): composing conf/, validating params, checking estimators."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest
import yaml

from loopline.config import params as cfg
from loopline.config.compose import compose, diff_keys
from loopline.config.params import Params, validate_params
from loopline.config.pipeline import Distribution, ModelConfig, check_estimator
from loopline.core.errors import LooplineError
from loopline.core.layout import find_root

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def _composed_text(overrides: tuple[str, ...]) -> str:
    return compose(ROOT, list(overrides))


def composed(overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Parsed composition (cached: Hydra takes a few hundred ms per compose)."""
    return yaml.safe_load(_composed_text(tuple(overrides)))


def params_for(overrides: list[str] | tuple[str, ...] = ()) -> Params:
    return validate_params(composed(overrides))


def error_of(data: dict) -> str:
    with pytest.raises(LooplineError) as info:
        validate_params(data)
    return str(info.value)


# ------------------------------------------------------------------ compose


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
        compose(ROOT, ["model=nope"])


def test_compose_matches_committed_params_yaml():
    assert _composed_text(()) == (ROOT / "params.yaml").read_text(encoding="utf-8")


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
    compose_and_dump(out, config_dir=str(ROOT / "conf"), config_module=None,
                     config_name="config", plugins_path=str(tmp_path), overrides=list(overrides))
    dvc_bytes = out.read_bytes()
    ours = compose(ROOT, overrides).encode("utf-8")
    assert ours == dvc_bytes


# ------------------------------------------------- packaged defaults, one copy

GENERIC_GROUPS = ("features", "model", "search", "evaluate", "export", "gate", "serve", "monitor")


def _leaves(data: object, prefix: str = "") -> dict[str, object]:
    if isinstance(data, dict) and data:
        return {k: v for key, val in data.items() for k, v in _leaves(val, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): data}


def test_generic_groups_live_only_in_the_package():
    from loopline.config import defaults

    assert sorted(p.name for p in defaults.DIR.iterdir() if p.is_dir() and p.name != "__pycache__"
                  ) == sorted(GENERIC_GROUPS)
    own = sorted(str(p.relative_to(ROOT / "conf")) for p in (ROOT / "conf").rglob("*.yaml"))
    assert own == ["config.yaml", "data/credit.yaml", "evaluate/credit.yaml", "gate/credit.yaml",
                   "simulate/credit.yaml"]
    shadowed = [rel for rel in own if (defaults.DIR / rel).is_file()]
    assert not shadowed, f"conf/ copies packaged defaults: {shadowed}"
    conf = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())
    assert conf["hydra"]["searchpath"] == [defaults.SEARCHPATH]


@pytest.mark.parametrize("rel", ["evaluate/credit.yaml", "gate/credit.yaml"])
def test_a_reference_option_holds_only_what_differs_from_the_default(rel):
    """conf/<group>/credit.yaml starts from the packaged default and sets only other values."""
    from loopline.config import defaults

    own = yaml.safe_load((ROOT / "conf" / rel).read_text())
    assert own.pop("defaults") == ["default", "_self_"]
    generic = _leaves(yaml.safe_load((defaults.DIR / rel.split("/")[0] / "default.yaml").read_text()))
    same = [k for k, v in _leaves(own).items() if k in generic and generic[k] == v]
    assert own and not same, f"conf/{rel} repeats default values: {same}"


def test_the_reference_differs_from_the_generic_defaults_only_by_its_slices():
    keys = diff_keys(composed(["evaluate=default", "gate=default"]), composed())
    assert keys == ["evaluate.slice_column", "gate.slices.max_gap.roc_auc", "gate.slices.min.roc_auc"]
    assert composed(["evaluate=default"])["evaluate"]["slice_column"] is None


def test_editing_a_packaged_default_recomposes(tmp_path, monkeypatch):
    """The fingerprint that lets a no-op `loopline run` skip composing covers the defaults."""
    import shutil

    from loopline.config import compose as composing
    from loopline.config import defaults

    copy_dir = tmp_path / "defaults"
    shutil.copytree(defaults.DIR, copy_dir)
    monkeypatch.setattr(defaults, "DIR", copy_dir)
    before = composing._fingerprint(ROOT, [])
    assert composing._fingerprint(ROOT, []) == before
    gate = copy_dir / "gate" / "default.yaml"
    gate.write_text(gate.read_text().replace("roc_auc: 0.80", "roc_auc: 0.81"))
    assert composing._fingerprint(ROOT, []) != before


# --------------------------------------------------------------- validation


def test_validate_params_rejects_non_mapping():
    with pytest.raises(LooplineError, match="expected a mapping"):
        validate_params(["not", "a", "mapping"])


def test_test_size_out_of_range_names_key_path():
    msg = error_of(composed(["data.split.test_size=1.5"]))
    assert "data.split.test_size" in msg
    assert "1.5" in msg
    assert msg.startswith("invalid config in params.yaml:")
    assert "\n" not in msg


def test_cv_below_two_names_key_path():
    msg = error_of(composed(["search.cv=1"]))
    assert "search.cv:" in msg
    assert "got 1" in msg


def test_unknown_numeric_imputer_names_key_path():
    msg = error_of(composed(["features.numeric_imputer=foo"]))
    assert "features.numeric_imputer:" in msg
    assert "'foo'" in msg


def test_slice_column_not_in_schema():
    msg = error_of(composed(["evaluate.slice_column=Nope"]))
    assert "evaluate.slice_column 'Nope'" in msg
    assert "not a column of data.schema" in msg


def test_grid_search_with_distribution_is_rejected():
    msg = error_of(composed(["model=logreg", "search=grid"]))
    assert "model.search_space.C" in msg
    assert "loguniform" in msg
    # the same model with a random search is fine
    assert params_for(["model=logreg", "search=random"]).search.method == "random"


def test_features_drop_unknown_column():
    data = composed()
    data["features"]["drop"] = ["NotAColumn"]
    msg = error_of(data)
    assert "features.drop" in msg and "NotAColumn" in msg


def test_positive_class_must_be_a_target_category():
    msg = error_of(composed(["data.positive_class=ugly"]))
    assert "positive_class 'ugly'" in msg


def test_target_must_be_category():
    data = composed(["data.target=Age"])
    msg = error_of(data)
    assert "target 'Age' must have type 'category'" in msg


def test_min_above_max_names_column():
    msg = error_of(composed(["data.schema.columns.Age.min=200"]))
    assert "data.schema.columns.Age" in msg
    assert "greater than max" in msg


def test_dask_backend_needs_scheduler():
    msg = error_of(composed(["search.backend=dask"]))
    assert msg.startswith("invalid config in params.yaml: search:")
    assert "dask_scheduler" in msg


def test_n_jobs_zero_rejected():
    assert "n_jobs" in error_of(composed(["search.n_jobs=0"]))


def test_unknown_top_level_key_rejected():
    assert "foo: Extra inputs are not permitted" in error_of(composed(["+foo=1"]))


def test_estimator_without_target_rejected():
    data = composed()
    del data["model"]["estimator"]["_target_"]
    msg = error_of(data)
    assert "model.estimator" in msg and "_target_" in msg


def test_source_name_is_used_in_message():
    data = composed(["search.cv=1"])
    with pytest.raises(LooplineError, match=r"^invalid config in conf/ \(composed\): search\.cv"):
        validate_params(data, "conf/ (composed)")


def test_no_features_left_after_drop():
    data = composed()
    cols = [c for c in data["data"]["schema"]["columns"] if c != "Status"]
    data["features"]["drop"] = cols
    assert "no feature columns" in error_of(data)


def test_feature_columns_split_numeric_and_categorical():
    p = params_for(["features.drop=[Debt]"])
    numeric, categorical = p.data.feature_columns(p.features.drop)
    assert "Status" not in numeric + categorical
    assert "Debt" not in numeric
    assert numeric == ["Seniority", "Time", "Age", "Expenses", "Income", "Assets", "Amount",
                       "Price"]
    assert categorical == ["Home", "Marital", "Records", "Job"]


def test_bad_distribution_reported_under_plain_key_path():
    msg = error_of(composed(["model=logreg", "model.search_space.C.dist=foo"]))
    assert "model.search_space.C.dist:" in msg
    assert "function-after" not in msg


# ------------------------------------------------------------ check_estimator


def _model(estimator: dict, space: dict | None = None) -> ModelConfig:
    return ModelConfig(name="m", estimator=estimator, search_space=space or {})


def test_check_estimator_unknown_target():
    with pytest.raises(LooplineError,
                       match=r"unknown estimator.*'sklearn\.ensemble\.NoSuchForest'"):
        check_estimator(_model({"_target_": "sklearn.ensemble.NoSuchForest"}))
    with pytest.raises(LooplineError, match="cannot be imported"):
        check_estimator(_model({"_target_": "nosuchpkg_xyz.mod.Cls"}))


def test_check_estimator_regressor_is_not_a_classifier():
    with pytest.raises(LooplineError,
                       match=r"'sklearn\.linear_model\.LinearRegression' is not a classifier"):
        check_estimator(_model({"_target_": "sklearn.linear_model.LinearRegression"}))


def test_check_estimator_module_attribute_that_is_not_a_class():
    with pytest.raises(LooplineError, match="is not a classifier"):
        check_estimator(_model({"_target_": "os.path"}))


def test_check_estimator_rejects_clusterer_with_predict_proba():
    with pytest.raises(LooplineError, match="is not a classifier"):
        check_estimator(_model({"_target_": "sklearn.mixture.GaussianMixture"}))


def test_check_estimator_unknown_parameter():
    with pytest.raises(LooplineError, match=r"LogisticRegression has no parameter 'foo'") as info:
        check_estimator(_model({"_target_": "sklearn.linear_model.LogisticRegression", "foo": 1}))
    assert "max_iter" in str(info.value)  # lists what it does take


def test_check_estimator_unknown_search_space_parameter():
    with pytest.raises(LooplineError, match=r"has no parameter 'alpha'"):
        check_estimator(_model({"_target_": "sklearn.linear_model.LogisticRegression"},
                               {"alpha": [0.1, 1.0]}))


def test_check_estimator_accepts_valid_model():
    from sklearn.linear_model import LogisticRegression

    got = check_estimator(_model({"_target_": "sklearn.linear_model.LogisticRegression",
                                  "max_iter": 10}, {"C": [0.1, 1.0]}))
    assert got is LogisticRegression


# ------------------------------------------------------------------ find_root


def test_find_root_from_subdirectory():
    assert find_root(ROOT / "src" / "loopline") == ROOT
    assert find_root(ROOT) == ROOT


def test_find_root_outside_repo_raises(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    with pytest.raises(LooplineError, match=r"not a loopline repo") as info:
        find_root(tmp_path / "a" / "b")
    assert str((tmp_path / "a" / "b").resolve()) in str(info.value)


def test_find_root_needs_both_dvc_yaml_and_conf(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    with pytest.raises(LooplineError):
        find_root(tmp_path)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text("seed: 1\n")
    (tmp_path / "sub").mkdir()
    assert find_root(tmp_path / "sub") == tmp_path.resolve()


# ------------------------------------------------------------------ load_params


def test_load_params_missing_file(tmp_path):
    with pytest.raises(LooplineError, match="params.yaml is missing"):
        cfg.load_params(tmp_path)


def test_load_params_invalid_yaml(tmp_path):
    (tmp_path / "params.yaml").write_text("a: [1, 2\n")
    with pytest.raises(LooplineError, match="params.yaml is not valid YAML"):
        cfg.load_params(tmp_path)


def test_load_params_of_repo():
    assert cfg.load_params(ROOT) == params_for()


# ------------------------------------------------------------------- diff_keys


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
