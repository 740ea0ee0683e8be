"""Reading and validating params (config/params.py): errors name the key path."""

from __future__ import annotations

import pytest
import yaml

from loopline.config import params as cfg
from loopline.config.params import Params, validate_params
from loopline.core.errors import LooplineError
from tests.helpers import REPO
from tests.helpers.config import composed, error_of, params_for

# --------------------------------------------------------------------------- validation


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


def test_simulate_config_is_checked() -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["simulate"]["shift"] = {"Home": 1.2}
    with pytest.raises(ValueError, match="simulate names 'Home', which is not a numeric feature"):
        Params.model_validate(raw)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["simulate"]["label_delay"] = 4
    with pytest.raises(ValueError, match="label_delay must be shorter"):
        Params.model_validate(raw)


# -------------------------------------------------------------------------- load_params


def test_load_params_missing_file(tmp_path):
    with pytest.raises(LooplineError, match="params.yaml is missing"):
        cfg.load_params(tmp_path)


def test_load_params_invalid_yaml(tmp_path):
    (tmp_path / "params.yaml").write_text("a: [1, 2\n")
    with pytest.raises(LooplineError, match="params.yaml is not valid YAML"):
        cfg.load_params(tmp_path)


def test_load_params_of_repo():
    assert cfg.load_params(REPO) == params_for()


def test_monitor_drift_methods_are_the_ones_the_monitor_implements() -> None:
    """A method the monitor cannot run is refused when params are read, never at monitor time."""
    from loopline.core.names import DRIFT_METHODS
    from loopline.monitoring.drift import DEFAULT_THRESHOLDS, column_drift

    assert set(DEFAULT_THRESHOLDS) == set(DRIFT_METHODS)  # derived, not declared again
    for method, numeric_only in (("hellinger", None), ("wasserstein", True)):
        data = composed()
        data["monitor"]["drift_methods"] = {"Home" if numeric_only else "Age": method}
        msg = error_of(data)
        assert "monitor" in msg and repr(method) in msg
        if numeric_only:
            assert "'Home' is categorical" in msg
    data = composed()
    data["monitor"]["drift_methods"] = {"Age": "psi", "Home": "jensenshannon"}
    assert validate_params(data).monitor.drift_methods == {"Age": "psi", "Home": "jensenshannon"}
    data["monitor"]["drift_methods"] = {"Nope": "psi"}
    assert "not a feature column" in error_of(data)
    # every declared method runs on the column kinds it claims
    import numpy as np

    for name, m in DRIFT_METHODS.items():
        column_drift("x", np.arange(50.0), np.arange(50.0) + 1, numeric=True, method=name)
        if not m.numeric_only:
            column_drift("c", np.array(["a", "b"] * 20), np.array(["a", "b", "b"] * 10),
                         numeric=False, method=name)
