"""Custom skl2onnx converters for the tree ensembles.

Random forest / extra trees: one vectorised ``TreeEnsembleClassifier`` whose input is cast
to float32 and back (sklearn's ``X.astype(float32)``) and whose thresholds and leaves are
float64, so sums stay exact. HistGradientBoosting: skl2onnx's converter fed double, its
attributes fixed for onnx >= 1.17 and kept in double. Why, and the measured figures:
docs/onnx.md.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from onnx import TensorProto, numpy_helper
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
from skl2onnx.operator_converters.random_forest import convert_sklearn_random_forest_classifier
from skl2onnx.shape_calculators.linear_classifier import calculate_linear_classifier_output_shapes
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)

from loopline.model.onnx.graph import as_double, node_name, single_input

if TYPE_CHECKING:
    from skl2onnx.common._topology import Scope


def _class_label_attrs(classes: np.ndarray) -> dict[str, list]:
    """``classlabels_int64s`` or ``classlabels_strings`` for a classifier's classes."""
    if all(isinstance(c, (int, np.integer, bool, np.bool_)) for c in classes):
        return {"classlabels_int64s": [int(c) for c in classes]}
    if all(isinstance(c, (float, np.floating)) and float(c).is_integer() for c in classes):
        return {"classlabels_int64s": [int(c) for c in classes]}
    if all(isinstance(c, str) for c in classes):
        return {"classlabels_strings": [str(c) for c in classes]}
    raise ValueError(f"class labels must be all integers or all strings, got {list(classes)!r}")


def _tree_nodes(tree: Any, tree_id: int) -> dict[str, np.ndarray]:
    """Node arrays of one fitted sklearn tree (``nodes_*`` attributes)."""
    t = tree.tree_
    if t.n_outputs != 1:
        raise NotImplementedError("multi-output trees are not supported")
    leaf = t.children_left == -1
    missing_left = getattr(t, "missing_go_to_left", np.zeros(t.node_count, dtype=np.uint8))
    return {
        "nodes_treeids": np.full(t.node_count, tree_id),
        "nodes_nodeids": np.arange(t.node_count),
        "nodes_featureids": np.where(leaf, 0, t.feature),
        "nodes_values": np.where(leaf, 0.0, t.threshold),
        "nodes_truenodeids": np.where(leaf, 0, t.children_left),
        "nodes_falsenodeids": np.where(leaf, 0, t.children_right),
        "nodes_missing_value_tracks_true": np.where(leaf, 0, missing_left),
        "nodes_modes": np.where(leaf, "LEAF", "BRANCH_LEQ"),
    }


def _tree_leaves(tree: Any, tree_id: int, n_classes: int, n_trees: int) -> dict[str, np.ndarray]:
    """Leaf weights of one tree (``class_*`` attributes): class probability / n_trees.

    Binary models store only the positive class; onnxruntime then outputs [1 - p, p].
    """
    t = tree.tree_
    leaves = np.flatnonzero(t.children_left == -1)
    value = t.value[leaves, 0, :n_classes].astype(np.float64)
    total = value.sum(axis=1, keepdims=True)
    proba = value / np.where(total == 0.0, 1.0, total) / n_trees
    class_ids = np.arange(n_classes)
    if n_classes == 2:
        proba, class_ids = proba[:, 1:], class_ids[:1]
    return {
        "class_treeids": np.full(proba.size, tree_id),
        "class_nodeids": np.repeat(leaves, proba.shape[1]),
        "class_ids": np.tile(class_ids, len(leaves)),
        "class_weights": proba.ravel(),
    }


def _forest_attrs(trees: Sequence[Any], n_classes: int) -> dict[str, Any]:
    """TreeEnsembleClassifier attributes for fitted sklearn trees, vectorised per tree.

    Thresholds and leaf weights are float64 ``*_as_tensor`` attributes: sklearn's own
    thresholds (the graph reproduces sklearn's float32 cast of X) and sums in double.
    """
    parts = [
        {**_tree_nodes(tree, i), **_tree_leaves(tree, i, n_classes, len(trees))}
        for i, tree in enumerate(trees)
    ]
    attrs: dict[str, Any] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    for k in ("nodes_values", "class_weights"):
        attrs[f"{k}_as_tensor"] = numpy_helper.from_array(attrs.pop(k).astype(np.float64), name=k)
    attrs["nodes_modes"] = attrs["nodes_modes"].tolist()
    for k, v in attrs.items():
        if isinstance(v, np.ndarray):
            attrs[k] = v.astype(np.int64).tolist()
    attrs["post_transform"] = "NONE"
    return attrs


def _convert_forest(scope: Scope, operator: Any, container: Any) -> None:
    """RandomForest / ExtraTrees classifier: float32 cast like sklearn, double sums."""
    op = operator.raw_operator
    trees = op.estimators_
    x = single_input(scope, operator, container)
    x32 = scope.get_unique_variable_name("x_float32")
    container.add_node("Cast", [x], [x32], to=TensorProto.FLOAT, name=node_name(scope, "Cast"))
    x64 = scope.get_unique_variable_name("x_float32_as_double")
    container.add_node("Cast", [x32], [x64], to=TensorProto.DOUBLE, name=node_name(scope, "Cast"))
    attrs = _forest_attrs(trees, len(op.classes_))
    attrs.update(_class_label_attrs(op.classes_))
    container.add_node(
        "TreeEnsembleClassifier",
        [x64],
        [operator.outputs[0].full_name, operator.outputs[1].full_name],
        op_domain="ai.onnx.ml",
        op_version=3,
        name=node_name(scope, "TreeEnsembleClassifier"),
        **attrs,
    )


class _DoubleInput:
    """Operator view whose single input is a given double tensor (for stock converters)."""

    class _Var:
        def __init__(self, var: Any, name: str) -> None:
            self._var, self.full_name, self.onnx_name = var, name, name
            self.type = DoubleTensorType(copy.deepcopy(var.type.shape))

        def __getattr__(self, key: str) -> Any:
            return getattr(self._var, key)

    def __init__(self, operator: Any, name: str) -> None:
        self._operator = operator
        self.inputs = [self._Var(operator.inputs[0], name)]
        self.input_full_names = [name]

    def __getattr__(self, key: str) -> Any:
        return getattr(self._operator, key)


class _TreeAttrContainer:
    """Container proxy fixing skl2onnx's TreeEnsembleClassifier attributes for HGB.

    Casts bools (rejected by onnx >= 1.17 protobuf) to int and moves float64
    thresholds / leaves / baselines to the ``*_as_tensor`` attributes so they stay
    double.
    """

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, key: str) -> Any:
        return getattr(self._container, key)

    def add_node(self, op_type: str, inputs: Any, outputs: Any, **attrs: Any) -> Any:
        if op_type == "TreeEnsembleClassifier":
            for key, value in list(attrs.items()):
                if isinstance(value, list) and any(
                    isinstance(v, (bool, np.bool_, np.integer)) for v in value
                ):
                    attrs[key] = [int(v) for v in value]
            for key in ("nodes_values", "class_weights", "base_values"):
                if key in attrs:
                    array = np.asarray(attrs.pop(key), dtype=np.float64)
                    attrs[f"{key}_as_tensor"] = numpy_helper.from_array(array, name=key)
            attrs.pop("nodes_hitrates", None)
        return self._container.add_node(op_type, inputs, outputs, **attrs)


def _convert_hist_gradient_boosting(scope: Scope, operator: Any, container: Any) -> None:
    """HistGradientBoostingClassifier via skl2onnx, in double, with fixed attributes."""
    op = operator.raw_operator
    if any(p.nodes["is_categorical"].any() for preds in op._predictors for p in preds):
        raise NotImplementedError("HistGradientBoosting categorical splits cannot be exported")
    x64 = as_double(scope, operator, container)
    convert_sklearn_random_forest_classifier(
        scope, _DoubleInput(operator, x64), _TreeAttrContainer(container), op_version=3
    )


def _shape_tree_classifier(operator: Any) -> None:
    """Classifier shapes, with float probabilities (TreeEnsembleClassifier's output type)."""
    calculate_linear_classifier_output_shapes(operator)
    proba = operator.outputs[1]
    proba.type = FloatTensorType(copy.deepcopy(proba.type.shape))


#: estimator class -> (converter, shape calculator), passed to skl2onnx per call
CONVERTERS = {
    RandomForestClassifier: (_convert_forest, _shape_tree_classifier),
    ExtraTreesClassifier: (_convert_forest, _shape_tree_classifier),
    HistGradientBoostingClassifier: (_convert_hist_gradient_boosting, _shape_tree_classifier),
}
