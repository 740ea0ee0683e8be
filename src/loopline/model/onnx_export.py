"""Export a fitted loopline pipeline to ONNX, run it with onnxruntime, check parity.

The whole ``Pipeline([("prep", ColumnTransformer), ("model", classifier)])`` is
exported, so serving needs only onnxruntime and a model frame
(:func:`loopline.model.features.to_model_frame`).

Graph contract (what :func:`convert` produces):

* one input per column, named after it: numeric columns ``tensor(double)[N, 1]``,
  categorical columns ``tensor(string)[N, 1]`` with ``""`` for missing;
* output ``label`` (class labels, ``classes[argmax(probabilities)]``) and
  ``probabilities`` (plain ``[N, n_classes]`` tensor, no ZipMap, column order of
  ``classes``); probabilities are float32 for tree models, float64 otherwise;
* metadata ``loopline.classes`` / ``loopline.numeric`` / ``loopline.categorical``
  (JSON), so :class:`OnnxModel` needs nothing but onnxruntime.

Opsets: ``{"": 18, "ai.onnx.ml": 3}``. ml 3 is the first version of
``TreeEnsembleClassifier`` with ``*_as_tensor`` (double) attributes, and 18 is the
main opset skl2onnx pairs with it (also the minimum of skl2onnx's own KNNImputer
converter, which was the first blocker with 17). onnxruntime >= 1.16 runs it;
1.32 runs every combination measured below. The newer ``ai.onnx.ml`` 5
``TreeEnsemble`` op was not needed: ml 3 with double attributes already reaches
float32 output rounding.

Why the graph computes in float64 (all measured on credit_data, 80/20 split;
the old float32 graph is skl2onnx's default):

* float32 numeric inputs, float32 Imputer/Scaler: LogisticRegression is fine
  (1.7e-7), but RandomForest misses by 0.04-0.19 with scaling because
  ``(x - mean) / std`` computed in float32 lands one ulp away from the float64
  value that sklearn rounds, and thresholds sit at midpoints between such values.
* no scaling for trees removes that for SimpleImputer, but KNNImputer in float32
  still picks wrong donors (its distance formula ``|x|^2 - 2xy + |y|^2`` cancels
  catastrophically on Income/Assets-sized values: a 0.22 probability error on a
  training row), and RandomForest still flips 3-7 labels per 20 % split on exact
  0.5/0.5 ties because the float32 sum of 100 leaf weights of 0.01 is not 0.5.
* ``DoubleTensorType`` inputs with skl2onnx's stock converters fail: onnxruntime
  has no double kernel for ``ai.onnx.ml.Imputer``, the KNNImputer shape
  calculator only accepts float, and the tree converters store float32 leaves.

So :func:`convert` feeds float64 and installs per-call converters (no global
registration) that keep the numeric path in float64 end to end:

* ``SimpleImputer`` (numeric): ``Where(IsNaN(x), statistics, x)`` in double;
  string imputation keeps skl2onnx's converter.
* ``KNNImputer``: own double graph mirroring sklearn's ``transform`` (same
  nan-euclidean formula, k nearest donors per column with ``TopK``, NaN-distance
  donors weighted 0, column mean when no distance is defined). skl2onnx's
  converter is float32-only and its graph also failed at run time on a small
  synthetic frame (``GatherElements`` index out of range; ``ScatterND`` shape
  error on a row with every feature missing), even in float32. The graph is
  exact for :class:`loopline.model.features.StableKNNImputer` (what
  ``build_preprocessor`` uses): plain KNNImputer picks donors tied at the k-th
  distance in ``np.argpartition`` order, which no ONNX op reproduces (a tie on
  credit_data, seed-42 split, moved one test row by 0.014), and sums them in that
  order (on non-integer data an imputed training value one ulp off fell exactly
  on an HGB threshold: 0.033).
* ``StandardScaler``: skl2onnx's own double path, ``(x - mean_) / scale_``,
  bit-identical to sklearn.
* Random forest / extra trees: own vectorised converter. Inputs go through
  ``Cast(float)`` then ``Cast(double)``, which is exactly sklearn's
  ``X.astype(float32)`` before its ``x <= threshold`` test with float64
  thresholds, so no threshold adjustment is needed (skl2onnx's bisection for that
  was 4 of the 8 s of converting a 100-tree forest). Leaves are per-tree
  probabilities / n_trees as float64 tensors, so onnxruntime sums in double and
  exact 0.5/0.5 ties stay ties.
* HistGradientBoosting: skl2onnx's converter fed double, with float64 thresholds,
  leaves and baseline (HGB compares ``float64 x <= threshold``). The stock call
  fails to convert at every ml opset (3, 4 and 5) with onnx 1.23 because it
  passes Python bools in ``nodes_missing_value_tracks_true``; the wrapper casts
  them to int. Categorical splits (``categorical_features``) are rejected.
* LogisticRegression: skl2onnx's double path (MatMul + Sigmoid/Softmax).
* ``label`` is recomputed in the graph as ``classes[ArgMax(probabilities)]``
  (first index on ties), sklearn's own rule, so the label always agrees with the
  probabilities and an exact 0.5/0.5 tie gives sklearn's first class.

Measured on credit_data (train on 80 %, parity on the 20 % and on the training
rows): LogisticRegression, RandomForest(100) and HGB, each with mean / median /
KNN imputation, both categorical policies, trees scaled and unscaled, on the
binary Status target, a 6-class target (Home) and a non-integer copy of the
numerics (x 1.0371 + noise): 90 combinations, zero label mismatches, max abs
probability difference 4.4e-16 for LogisticRegression, 3e-8 for forests and
2.8e-7 for HGB (float32 output rounding). Also the conf/model search-space
corners (RF 200 trees with min_samples_leaf 5/10, max_depth 6/10, max_features
0.5; HGB 200 iterations, 7/31 leaves; ExtraTrees) on another split: same
figures. Converting a 100-tree forest takes ~1 s.

Limits (parity is not guaranteed, the parity check will show the worst rows):

* Other estimators go through skl2onnx's stock converters with double inputs;
  whether they convert and match is up to skl2onnx.
* A sklearn float64 tie broken by rounding noise (two classes within ~1e-16)
  can go either way; exact ties match.
* A plain ``sklearn.impute.KNNImputer`` (not :class:`StableKNNImputer`) still
  converts, but rows with a tie at the k-th donor may differ (see above).
* KNN distances are summed by BLAS in sklearn and by onnxruntime's MatMul in the
  graph: exact on integer-valued data; on non-integer data two donors at the same
  true distance can be ranked differently by rounding noise.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import sklearn
from onnx import ModelProto, TensorProto, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common._topology import Scope
from skl2onnx.common.data_types import (
    DoubleTensorType,
    FloatTensorType,
    StringTensorType,
)
from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer
from skl2onnx.operator_converters.random_forest import convert_sklearn_random_forest_classifier
from skl2onnx.shape_calculators.linear_classifier import calculate_linear_classifier_output_shapes
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import KNNImputer, SimpleImputer
from sklearn.pipeline import Pipeline

from loopline.model.features import StableKNNImputer
from loopline.model.runtime import (  # noqa: F401  (re-exported: part of this module's API)
    LABEL_OUTPUT,
    META_CATEGORICAL,
    META_CLASSES,
    META_NUMERIC,
    PROBA_OUTPUT,
    session_options,
)

TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
_CLASSES_CONST = "loopline_class_labels"


# --------------------------------------------------------------------------- helpers


def _node_name(scope: Scope, base: str) -> str:
    """Unique node name inside the skl2onnx scope."""
    return scope.get_unique_operator_name(base)


class _Ops:
    """Tiny node/initializer builder over a skl2onnx scope and container."""

    def __init__(self, scope: Scope, container: Any) -> None:
        self.scope, self.container = scope, container

    def const(self, value: np.ndarray, base: str = "const") -> str:
        """Add ``value`` as an initializer (float -> double, int -> int64); return its name."""
        value = np.asarray(value)
        if value.dtype.kind == "f":
            dtype, proto = np.float64, TensorProto.DOUBLE
        else:
            dtype, proto = np.int64, TensorProto.INT64
        name = self.scope.get_unique_variable_name(base)
        flat = value.astype(dtype).ravel().tolist()
        self.container.add_initializer(name, proto, list(value.shape), flat)
        return name

    def __call__(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        """Add one node; return the name of its (single) output."""
        out = out or self.scope.get_unique_variable_name(op_type.lower())
        self.container.add_node(
            op_type, list(inputs), [out], name=_node_name(self.scope, op_type), **attrs
        )
        return out

    def top_k(self, x: str, k: int) -> tuple[str, str]:
        """Smallest ``k`` values of ``x`` along axis 1 (ties: lower index first)."""
        values = self.scope.get_unique_variable_name("topk_values")
        indices = self.scope.get_unique_variable_name("topk_indices")
        self.container.add_node(
            "TopK",
            [x, self.const(np.array([k]), "k")],
            [values, indices],
            axis=1,
            largest=0,
            sorted=1,
            name=_node_name(self.scope, "TopK"),
        )
        return values, indices


def _single_input(scope: Scope, operator: Any, container: Any) -> str:
    """Name of one tensor holding all of the operator's inputs (Concat if several).

    skl2onnx's ``concatenate_variables`` goes through ``FeatureVectorizer``, which
    rounds to float32; a plain ``Concat`` keeps double.
    """
    names = [v.full_name for v in operator.inputs]
    if len(names) == 1:
        return names[0]
    out = scope.get_unique_variable_name("merged")
    container.add_node("Concat", names, [out], axis=1, name=_node_name(scope, "Concat"))
    return out


def _as_double(scope: Scope, operator: Any, container: Any) -> str:
    """Name of the operator's (single) input as a double tensor, casting if needed."""
    name = _single_input(scope, operator, container)
    if isinstance(operator.inputs[0].type, DoubleTensorType):
        return name
    out = scope.get_unique_variable_name("as_double")
    container.add_node("Cast", [name], [out], to=TensorProto.DOUBLE, name=_node_name(scope, "Cast"))
    return out


# ------------------------------------------------------------------ numeric imputers


def _convert_simple_imputer(scope: Scope, operator: Any, container: Any) -> None:
    """SimpleImputer: string inputs use skl2onnx; numeric ones ``Where(IsNaN)`` in double.

    onnxruntime has no double ``Imputer`` kernel, and a float one would round the
    imputed statistic; this keeps sklearn's exact float64 fill values.
    """
    if isinstance(operator.inputs[0].type, StringTensorType):
        convert_sklearn_imputer(scope, operator, container)
        return
    op = operator.raw_operator
    if op.add_indicator:
        raise NotImplementedError("SimpleImputer(add_indicator=True) is not supported")
    if not (isinstance(op.missing_values, float) and np.isnan(op.missing_values)):
        raise NotImplementedError("numeric SimpleImputer must use missing_values=np.nan")
    stats = np.asarray(op.statistics_, dtype=np.float64)
    valid = ~np.isnan(stats)
    g = _Ops(scope, container)
    x = _as_double(scope, operator, container)
    fill = g.const(np.nan_to_num(stats)[None, :], "fill_values")
    out = operator.outputs[0].full_name
    if valid.all():
        g("Where", g("IsNaN", x), fill, x, out=out)
        return
    # sklearn drops columns that were all-NaN at fit time (keep_empty_features=False).
    filled = g("Where", g("IsNaN", x), fill, x)
    g("Gather", filled, g.const(np.flatnonzero(valid), "keep_columns"), out=out, axis=1)


def _shape_simple_imputer(operator: Any) -> None:
    """Output = input type (double stays double), width = kept columns."""
    op = operator.raw_operator
    itype = operator.inputs[0].type
    n = itype.shape[0] if itype.shape else None
    width = len(op.statistics_)
    if not isinstance(itype, StringTensorType):
        width = int((~np.isnan(np.asarray(op.statistics_, dtype=np.float64))).sum())
    operator.outputs[0].type = type(itype)([n, width])


def _nan_euclidean(g: _Ops, x: str, fit_x: np.ndarray) -> str:
    """sklearn's ``nan_euclidean_distances(X, fit_X)`` as a double graph, same formula.

    ``d2 = -2 x.y + |x|^2 + |y|^2 - x^2.missing_y - missing_x.y^2`` over zero-filled
    values, clipped at 0, scaled by ``n_features / n_present`` and NaN where no
    feature is present in both rows.
    """
    miss_y = np.isnan(fit_x)
    y0 = np.where(miss_y, 0.0, fit_x)
    n_features = fit_x.shape[1]
    miss_x = g("IsNaN", x)
    x0 = g("Where", miss_x, g.const(np.array(0.0)), x)
    x0_sq = g("Mul", x0, x0)
    d = g("Mul", g("MatMul", x0, g.const(y0.T, "fit_t")), g.const(np.array(-2.0)))
    d = g("Add", d, g("ReduceSum", x0_sq, g.const(np.array([1])), keepdims=1))
    d = g("Add", d, g.const((y0 * y0).sum(axis=1)[None, :], "fit_sq_norm"))
    d = g("Sub", d, g("MatMul", x0_sq, g.const(miss_y.T.astype(np.float64), "fit_missing_t")))
    miss_x_f = g("Cast", miss_x, to=TensorProto.DOUBLE)
    d = g("Sub", d, g("MatMul", miss_x_f, g.const((y0 * y0).T, "fit_sq_t")))
    d = g("Max", d, g.const(np.array(0.0)))
    present_x = g("Sub", g.const(np.array(1.0)), miss_x_f)
    present = g("MatMul", present_x, g.const((~miss_y).T.astype(np.float64), "fit_present_t"))
    none = g("Equal", present, g.const(np.array(0.0)))
    d = g("Div", d, g("Max", present, g.const(np.array(1.0))))
    d = g("Mul", d, g.const(np.array(float(n_features))))
    d = g("Where", none, g.const(np.array(np.nan)), d)
    return g("Sqrt", d)


def _knn_column(g: _Ops, x: str, dist: str, op: KNNImputer, col: int) -> str:
    """Column ``col`` of ``x`` with NaNs replaced like ``StableKNNImputer``.

    Donors are fit rows where ``col`` is observed; the ``k`` nearest by (distance,
    row) are taken with ``TopK`` (NaN distances last, weight 0) and summed one by
    one in that order; a row with no defined distance gets the column mean.
    """
    fit_x, fit_mask = op._fit_X, op._mask_fit_X
    donors = np.flatnonzero(~fit_mask[:, col])
    k = min(op.n_neighbors, donors.size)
    col_mean = float(np.ma.array(fit_x[:, col], mask=fit_mask[:, col]).mean())
    d = g("Gather", dist, g.const(donors, "donors"), axis=1)
    d_nan = g("IsNaN", d)
    _, idx = g.top_k(g("Where", d_nan, g.const(np.array(np.inf)), d), k)
    weights = g("Cast", g("Not", g("GatherElements", d_nan, idx, axis=1)), to=TensorProto.DOUBLE)
    values = g("Gather", g.const(fit_x[donors, col], "donor_values"), idx, axis=0)
    weighted = g("Mul", values, weights)
    total = g("Gather", weighted, g.const(np.array([0])), axis=1)
    for j in range(1, k):  # one by one, in distance order, like StableKNNImputer
        total = g("Add", total, g("Gather", weighted, g.const(np.array([j])), axis=1))
    count = g("ReduceSum", weights, g.const(np.array([1])), keepdims=1)
    mean = g("Div", total, g("Max", count, g.const(np.array(1.0))))
    has_donor = g("Greater", count, g.const(np.array(0.0)))
    imputed = g("Where", has_donor, mean, g.const(np.array(col_mean)))
    x_col = g("Gather", x, g.const(np.array([col])), axis=1)
    return g("Where", g("IsNaN", x_col), imputed, x_col)


def _convert_knn_imputer(scope: Scope, operator: Any, container: Any) -> None:
    """KNNImputer as a double-precision graph mirroring sklearn's ``transform``.

    skl2onnx's converter is float32 only (wrong donors on large values) and its
    graph fails at run time on some inputs (GatherElements out of range, rows
    with every feature missing), so this builds the computation directly.
    """
    op = operator.raw_operator
    if op.metric != "nan_euclidean" or op.weights != "uniform":
        raise NotImplementedError(
            "only KNNImputer(metric='nan_euclidean', weights='uniform') is supported"
        )
    if op.add_indicator:
        raise NotImplementedError("KNNImputer(add_indicator=True) is not supported")
    if not (isinstance(op.missing_values, float) and np.isnan(op.missing_values)):
        raise NotImplementedError("KNNImputer must use missing_values=np.nan")
    valid = np.asarray(op._valid_mask, dtype=bool)
    if op.keep_empty_features and not valid.all():
        raise NotImplementedError("KNNImputer(keep_empty_features=True) with empty columns")
    g = _Ops(scope, container)
    x = _as_double(scope, operator, container)
    dist = _nan_euclidean(g, x, np.asarray(op._fit_X, dtype=np.float64))
    columns = [_knn_column(g, x, dist, op, c) for c in np.flatnonzero(valid)]
    out = operator.outputs[0].full_name
    if len(columns) == 1:
        g("Identity", columns[0], out=out)
    else:
        g("Concat", *columns, out=out, axis=1)


def _shape_knn_imputer(operator: Any) -> None:
    """Output is double, one column per feature that had values at fit time."""
    itype = operator.inputs[0].type
    n = itype.shape[0] if itype.shape else None
    operator.outputs[0].type = DoubleTensorType([n, int(np.sum(operator.raw_operator._valid_mask))])


# ----------------------------------------------------------------------- tree models


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
    x = _single_input(scope, operator, container)
    x32 = scope.get_unique_variable_name("x_float32")
    container.add_node("Cast", [x], [x32], to=TensorProto.FLOAT, name=_node_name(scope, "Cast"))
    x64 = scope.get_unique_variable_name("x_float32_as_double")
    container.add_node("Cast", [x32], [x64], to=TensorProto.DOUBLE, name=_node_name(scope, "Cast"))
    attrs = _forest_attrs(trees, len(op.classes_))
    attrs.update(_class_label_attrs(op.classes_))
    container.add_node(
        "TreeEnsembleClassifier",
        [x64],
        [operator.outputs[0].full_name, operator.outputs[1].full_name],
        op_domain="ai.onnx.ml",
        op_version=3,
        name=_node_name(scope, "TreeEnsembleClassifier"),
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
    x64 = _as_double(scope, operator, container)
    convert_sklearn_random_forest_classifier(
        scope, _DoubleInput(operator, x64), _TreeAttrContainer(container), op_version=3
    )


def _shape_tree_classifier(operator: Any) -> None:
    """Classifier shapes, with float probabilities (TreeEnsembleClassifier's output type)."""
    calculate_linear_classifier_output_shapes(operator)
    proba = operator.outputs[1]
    proba.type = FloatTensorType(copy.deepcopy(proba.type.shape))


_CUSTOM_CONVERTERS = {
    SimpleImputer: (_convert_simple_imputer, _shape_simple_imputer),
    KNNImputer: (_convert_knn_imputer, _shape_knn_imputer),
    StableKNNImputer: (_convert_knn_imputer, _shape_knn_imputer),
    RandomForestClassifier: (_convert_forest, _shape_tree_classifier),
    ExtraTreesClassifier: (_convert_forest, _shape_tree_classifier),
    HistGradientBoostingClassifier: (_convert_hist_gradient_boosting, _shape_tree_classifier),
}


# ------------------------------------------------------------------------ conversion


def _final_estimator(pipeline: Any) -> Any:
    """The classifier at the end of ``pipeline`` (or ``pipeline`` itself)."""
    return pipeline.steps[-1][1] if isinstance(pipeline, Pipeline) else pipeline


def _check_columns(pipeline: Any, numeric: Sequence[str], categorical: Sequence[str]) -> None:
    """Fail early, naming the columns, when the prep step reads columns we do not feed."""
    overlap = sorted(set(numeric) & set(categorical))
    if overlap:
        raise ValueError(f"columns {overlap} are listed as both numeric and categorical")
    prep = pipeline.steps[0][1] if isinstance(pipeline, Pipeline) else None
    if not isinstance(prep, ColumnTransformer):
        return
    used = {c for _, _, cols in prep.transformers_ if isinstance(cols, (list, tuple)) for c in cols}
    unknown = sorted(
        c for c in used if isinstance(c, str) and c not in set(numeric) | set(categorical)
    )
    if unknown:
        raise ValueError(
            f"the pipeline reads columns that are neither numeric nor categorical: {unknown}"
        )


def _relabel(model: ModelProto, classes: np.ndarray) -> None:
    """Make ``label`` = ``classes[ArgMax(probabilities)]``, sklearn's own rule."""
    graph = model.graph
    label_type = graph.output[0].type.tensor_type.elem_type
    raw_name = f"{LABEL_OUTPUT}_onnxruntime"
    for node in graph.node:
        for i, out in enumerate(node.output):
            if out == LABEL_OUTPUT:
                node.output[i] = raw_name
    if label_type == TensorProto.STRING:
        const = helper.make_tensor(
            _CLASSES_CONST, TensorProto.STRING, [len(classes)], [str(c).encode() for c in classes]
        )
    else:
        const = numpy_helper.from_array(np.asarray(classes).astype(np.int64), _CLASSES_CONST)
    graph.initializer.append(const)
    graph.node.append(
        helper.make_node(
            "ArgMax",
            [PROBA_OUTPUT],
            ["loopline_label_index"],
            axis=1,
            keepdims=0,
            name="loopline_label_argmax",
        )
    )
    graph.node.append(
        helper.make_node(
            "Gather",
            [_CLASSES_CONST, "loopline_label_index"],
            [LABEL_OUTPUT],
            axis=0,
            name="loopline_label_gather",
        )
    )


def _json_classes(classes: np.ndarray) -> str:
    """Class labels as a JSON list of Python ints / strings."""
    return json.dumps([c.item() if isinstance(c, np.generic) else c for c in classes])


def convert(pipeline: Any, numeric: list[str], categorical: list[str]) -> bytes:
    """Export a fitted classifier pipeline (prep + model) to a serialized ONNX model.

    Args:
        pipeline: fitted ``Pipeline([("prep", ColumnTransformer), ("model", clf)])``
            trained on a model frame (see :mod:`loopline.model.features`).
        numeric: numeric column names (graph inputs ``tensor(double)[N, 1]``).
        categorical: categorical column names (graph inputs ``tensor(string)[N, 1]``).

    Returns:
        ``ModelProto.SerializeToString()`` with outputs ``label`` and
        ``probabilities`` (see the module docstring for the contract).

    Raises:
        ValueError: column lists overlap or miss a column the pipeline reads.
    """
    _check_columns(pipeline, numeric, categorical)
    model = _final_estimator(pipeline)
    initial_types = [(c, DoubleTensorType([None, 1])) for c in numeric]
    initial_types += [(c, StringTensorType([None, 1])) for c in categorical]
    onx = convert_sklearn(
        pipeline,
        initial_types=initial_types,
        name="loopline",  # not skl2onnx's random one: the same model gives the same bytes
        target_opset=TARGET_OPSET,
        options={id(model): {"zipmap": False}},
        custom_conversion_functions={k: v[0] for k, v in _CUSTOM_CONVERTERS.items()},
        custom_shape_calculators={k: v[1] for k, v in _CUSTOM_CONVERTERS.items()},
    )
    if [o.name for o in onx.graph.output] != [LABEL_OUTPUT, PROBA_OUTPUT]:
        names = [o.name for o in onx.graph.output]
        raise ValueError(f"expected a classifier with outputs label/probabilities, got {names}")
    _relabel(onx, model.classes_)
    helper.set_model_props(
        onx,
        {
            META_CLASSES: _json_classes(model.classes_),
            META_NUMERIC: json.dumps(list(numeric)),
            META_CATEGORICAL: json.dumps(list(categorical)),
            "loopline.sklearn_version": sklearn.__version__,
        },
    )
    # skl2onnx lists opsets in set order, which varies with the interpreter's hash seed
    opsets = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    onx.opset_import.extend(helper.make_opsetid(d, v) for d, v in opsets)
    return onx.SerializeToString()


# --------------------------------------------------------------------------- runtime


def _column(X: pd.DataFrame, name: str) -> Any:
    """Values of one column without building a Series.

    Building a Series costs ~30 us per column with pandas 3 on the 2-core box, which
    made make_feeds ~1 ms per call; pandas' internal ``_get_column_array`` returns
    the same ndarray/ExtensionArray in ~2 us. Falls back to the public API if the
    name is duplicated or pandas drops the method.
    """
    loc = X.columns.get_loc(name)
    getter = getattr(X, "_get_column_array", None)
    if isinstance(loc, int) and getter is not None:
        return getter(loc)
    return X[name].array


def _numeric_feed(values: Any) -> np.ndarray:
    """``[N, 1]`` float64 (a view when the column already is float64)."""
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        return values.reshape(-1, 1)
    if isinstance(values, np.ndarray):
        return values.astype(np.float64).reshape(-1, 1)
    return values.to_numpy(dtype=np.float64, na_value=np.nan).reshape(-1, 1)


def _string_feed(values: Any) -> np.ndarray:
    """``[N, 1]`` object array of str with ``""`` for missing.

    onnxruntime would silently turn ``None``/``NaN`` into the strings "None"/"nan"
    (an unknown category, not an imputed one), so missing values are mapped here.
    """
    if not isinstance(values, np.ndarray):
        return values.to_numpy(dtype=object, na_value="").reshape(-1, 1)
    missing = pd.isna(values)
    if missing.any():
        values = np.where(missing, "", values)
    return values.astype(object, copy=False).reshape(-1, 1)


def make_feeds(
    X: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> dict[str, np.ndarray]:
    """Turn a model frame into onnxruntime feeds: one ``[N, 1]`` array per column.

    Vectorised per column, no per-row Python: numeric columns become float64 (views
    when already float64); categorical ones object arrays of str with any missing
    value as ``""``, so pandas' ``str`` dtype (e.g. after a parquet round trip) is
    accepted too. Measured on the 2-core box, 13 credit_data columns: ~0.1 ms for 1
    row, ~0.35 ms for 1,000 rows (most of it the missing-value check of the 4
    categorical columns).

    Raises:
        ValueError: a column is absent from ``X``.
    """
    absent = [c for c in (*numeric, *categorical) if c not in X.columns]
    if absent:
        raise ValueError(f"columns missing from the data frame: {absent}")
    feeds = {c: _numeric_feed(_column(X, c)) for c in numeric}
    feeds.update({c: _string_feed(_column(X, c)) for c in categorical})
    return feeds




class OnnxModel:
    """A model exported by :func:`convert`, run with onnxruntime only.

    Args:
        model: serialized ONNX bytes or a path to a ``.onnx`` file.
        threads: intra-op threads (see :func:`session_options`).
    """

    def __init__(self, model: bytes | str | os.PathLike, *, threads: int = 1) -> None:
        source = model if isinstance(model, bytes) else os.fspath(model)
        self.session = ort.InferenceSession(
            source, sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_CLASSES not in meta:
            raise ValueError(
                f"model has no {META_CLASSES!r} metadata; export it with loopline.model.onnx_export.convert"
            )
        self.classes: list = json.loads(meta[META_CLASSES])
        inputs = self.session.get_inputs()
        self.input_names: list[str] = [i.name for i in inputs]
        self.numeric: list[str] = [i.name for i in inputs if i.type != "tensor(string)"]
        self.categorical: list[str] = [i.name for i in inputs if i.type == "tensor(string)"]

    def run(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Labels and float64 probabilities for a model frame, in one session run."""
        labels, proba = self.session.run(
            [LABEL_OUTPUT, PROBA_OUTPUT], make_feeds(X, self.numeric, self.categorical)
        )
        return labels, proba.astype(np.float64, copy=False)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """``[N, n_classes]`` float64 probabilities, columns in :attr:`classes` order."""
        return self.run(X)[1]

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted class labels (``classes[argmax(probabilities)]``)."""
        return self.run(X)[0]


# ---------------------------------------------------------------------------- parity


def _row_label(label: Any) -> Any:
    """Index label as a JSON-friendly Python value."""
    return label.item() if isinstance(label, np.generic) else label


def _worst_rows(
    X: pd.DataFrame,
    sk: tuple[np.ndarray, np.ndarray],
    ox: tuple[np.ndarray, np.ndarray],
    diff: np.ndarray,
    show: int,
) -> list[dict]:
    """Up to ``show`` rows: label mismatches first, then by largest probability diff."""
    (sk_label, sk_proba), (ox_label, ox_proba) = sk, ox
    mismatch = sk_label != ox_label
    order = np.lexsort((-diff, ~mismatch))[: max(show, 0)]
    return [
        {
            "row": _row_label(X.index[i]),
            "sklearn": sk_proba[i].tolist(),
            "onnx": ox_proba[i].tolist(),
            "diff": float(diff[i]),
            "sklearn_label": _row_label(sk_label[i]),
            "onnx_label": _row_label(ox_label[i]),
        }
        for i in order
    ]


def parity(
    pipeline: Any, onnx_bytes: bytes, X: pd.DataFrame, *, atol: float = 1e-4, show: int = 5
) -> dict:
    """Compare sklearn and ONNX predictions on a model frame.

    Passes when every row gets the same label, no probability differs by more than
    ``atol`` and the exported classes are the pipeline's.

    Returns:
        ``{"passed", "rows", "max_abs_diff", "label_mismatches", "atol", "worst"}``;
        ``worst`` holds up to ``show`` rows (label mismatches first, then largest
        diff) as ``{"row": index label, "sklearn": [...], "onnx": [...], "diff",
        "sklearn_label", "onnx_label"}``. A NaN or missing probability counts as an
        infinite difference.

    Raises:
        ValueError: ``X`` has no rows (parity on nothing proves nothing).
    """
    if len(X) == 0:
        raise ValueError("parity needs at least one row")
    model = OnnxModel(onnx_bytes)
    sk = (np.asarray(pipeline.predict(X)), np.asarray(pipeline.predict_proba(X), dtype=np.float64))
    ox = model.run(X)
    if sk[1].shape == ox[1].shape:
        diff = np.abs(sk[1] - ox[1]).max(axis=1)
    else:
        diff = np.full(len(X), np.inf)
    diff = np.where(np.isnan(diff), np.inf, diff)
    n_mismatch = int((sk[0] != ox[0]).sum())
    same_classes = model.classes == [_row_label(c) for c in pipeline.classes_]
    max_diff = float(diff.max())
    return {
        "passed": bool(max_diff <= atol and n_mismatch == 0 and same_classes),
        "rows": int(len(X)),
        "max_abs_diff": max_diff,
        "label_mismatches": n_mismatch,
        "atol": atol,
        "worst": _worst_rows(X, sk, ox, diff, show),
    }
