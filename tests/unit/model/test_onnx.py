"""Contract tests for the private skl2onnx API that the ONNX export (model/onnx/) relies on.

The custom converters (loopline.model.onnx.*) receive skl2onnx's ``Scope`` (private module
``skl2onnx.common._topology``), its container and operators, and call some of skl2onnx's
converters with proxies of them. (The frame feeds' private pandas method: test_feeds.py.)

pyproject.toml bounds these libraries below the next minor release after the tested one;
when a bound is raised and one of these tests fails, its message names what moved.
"""

from __future__ import annotations

import inspect
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from loopline.model.features import build_preprocessor
from loopline.model.onnx import convert as convert_module
from tests.helpers import REPO
from tests.helpers.model_data import SMALL_CATEGORICAL, SMALL_NUMERIC, small_model_frame

NUMERIC, CATEGORICAL = SMALL_NUMERIC, SMALL_CATEGORICAL
#: what the converters call on the objects skl2onnx hands them (loopline.model.onnx.*)
SCOPE_METHODS = {"get_unique_operator_name": ["seed"],
                 "get_unique_variable_name": ["seed"]}
CONTAINER_METHODS = {"add_node": ["op_type", "inputs", "outputs"],
                     "add_initializer": ["name", "onnx_type", "shape", "content"]}
OPERATOR_ATTRS = ("raw_operator", "inputs", "outputs")
VARIABLE_ATTRS = ("full_name", "onnx_name", "type")


def _fit(estimator) -> Pipeline:
    X, y = small_model_frame()
    prep = build_preprocessor(NUMERIC, CATEGORICAL, numeric_imputer="knn", knn_neighbors=3,
                              estimator=estimator)
    return Pipeline([("prep", prep), ("model", estimator)]).fit(X, y)


def _missing_params(fn, wanted: list[str]) -> list[str]:
    params = list(inspect.signature(fn).parameters)
    return [p for p in wanted if p not in params]


def test_skl2onnx_scope_is_where_loopline_expects_it() -> None:
    try:
        from skl2onnx.common._topology import Scope
    except ImportError as err:  # pragma: no cover - only when skl2onnx moves it
        pytest.fail(f"skl2onnx.common._topology.Scope moved ({err}); loopline.model.onnx.graph, "
                    "imputers and trees name it in their converters' signatures")
    for name, params in SCOPE_METHODS.items():
        method = getattr(Scope, name, None)
        assert method is not None, f"skl2onnx Scope.{name} is gone (loopline.model.onnx uses it)"
        missing = _missing_params(method, params)
        assert not missing, f"skl2onnx Scope.{name} no longer takes {missing}"


def test_custom_converters_get_the_scope_container_and_operator_they_use(monkeypatch) -> None:
    from skl2onnx.common._topology import Scope

    seen: list[tuple] = []

    def spy(converter):
        def wrapped(scope, operator, container):
            seen.append((scope, operator, container))
            return converter(scope, operator, container)
        return wrapped

    spied = {cls: (spy(conv), shape) for cls, (conv, shape) in convert_module.CONVERTERS.items()}
    monkeypatch.setattr(convert_module, "CONVERTERS", spied)
    convert_module.convert(_fit(LogisticRegression()), NUMERIC, CATEGORICAL)
    assert seen, "skl2onnx no longer calls custom_conversion_functions"
    problems = []
    for scope, operator, container in seen:
        if not isinstance(scope, Scope):
            problems.append(f"the scope is a {type(scope).__qualname__}, not Scope")
        problems += [f"Scope.{m} is gone" for m in SCOPE_METHODS if not hasattr(scope, m)]
        for name, params in CONTAINER_METHODS.items():
            method = getattr(container, name, None)
            if method is None:
                problems.append(f"container.{name} is gone")
            elif missing := _missing_params(method, params):
                problems.append(f"container.{name} no longer takes {missing}")
        problems += [f"operator.{a} is gone" for a in OPERATOR_ATTRS if not hasattr(operator, a)]
        for var in (*operator.inputs, *operator.outputs):
            problems += [f"variable.{a} is gone" for a in VARIABLE_ATTRS if not hasattr(var, a)]
            if not hasattr(var.type, "shape"):
                problems.append(f"variable type {type(var.type).__name__} has no shape")
    assert not problems, "skl2onnx's converter API moved: " + "; ".join(sorted(set(problems)))


def test_hist_gradient_boosting_attributes_are_caught_and_kept_double() -> None:
    """loopline.model.onnx.trees wraps skl2onnx's tree converter: it must still see the
    attributes it rewrites (float64 thresholds, leaves and baseline; bools as ints)."""
    import onnx

    onx = onnx.load_from_string(convert_module.convert(
        _fit(HistGradientBoostingClassifier(max_iter=5, random_state=0)), NUMERIC, CATEGORICAL))
    node = next(n for n in onx.graph.node if n.op_type == "TreeEnsembleClassifier")
    names = {a.name for a in node.attribute}
    for key in ("nodes_values", "class_weights", "base_values"):
        assert f"{key}_as_tensor" in names and key not in names, (
            f"skl2onnx's TreeEnsembleClassifier attribute {key!r} moved: it was not made double")
    assert "nodes_hitrates" not in names


def test_stock_skl2onnx_functions_loopline_calls_are_there() -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer
    from skl2onnx.operator_converters.random_forest import (
        convert_sklearn_random_forest_classifier,
    )
    from skl2onnx.shape_calculators.linear_classifier import (
        calculate_linear_classifier_output_shapes,
    )

    assert not _missing_params(convert_sklearn, [
        "initial_types", "name", "target_opset", "options", "custom_conversion_functions",
        "custom_shape_calculators"])
    assert not _missing_params(convert_sklearn_random_forest_classifier, ["op_version"])
    for fn in (convert_sklearn_imputer, convert_sklearn_random_forest_classifier):
        assert _missing_params(fn, ["scope", "operator", "container"]) == []
    assert _missing_params(calculate_linear_classifier_output_shapes, ["operator"]) == []


def test_private_api_libraries_are_bounded_and_the_installed_versions_fit() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = {Requirement(d).name: Requirement(d) for d in deps}
    for name in ("skl2onnx", "onnx", "onnxruntime", "pandas"):
        spec = reqs[name].specifier
        assert any(s.operator == "<" for s in spec), f"{name} has no upper bound in pyproject"
        assert metadata.version(name) in spec, f"{name} {metadata.version(name)} not in {spec}"
