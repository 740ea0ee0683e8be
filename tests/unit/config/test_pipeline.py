"""The pipeline's config schemas (config/pipeline.py): check_estimator."""

from __future__ import annotations

import pytest

from loopline.config.pipeline import ModelConfig, check_estimator
from loopline.core.errors import LooplineError


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


def test_the_id_column_is_a_schema_column_or_the_datas_own_row_id():
    from loopline.config.pipeline import DataConfig

    base = {"name": "d", "source": "d.csv", "target": "y", "positive_class": "a",
            "schema": {"columns": {"y": {"type": "category", "categories": ["a", "b"]},
                                   "x": {"type": "float"}}}}
    assert DataConfig.model_validate({**base, "id_column": "row_id"}).id_column == "row_id"
    with pytest.raises(ValueError, match="id_column 'key' is not a column of data.schema"):
        DataConfig.model_validate({**base, "id_column": "key"})
    with pytest.raises(ValueError, match="order_column 'row_id' is not a column of data.schema"):
        DataConfig.model_validate({**base, "order_column": "row_id"})
