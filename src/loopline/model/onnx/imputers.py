"""Custom skl2onnx converters for the numeric imputers, in double precision.

``SimpleImputer``: ``Where(IsNaN(x), statistics, x)`` (onnxruntime has no double
``Imputer`` kernel); string imputation keeps skl2onnx's converter. ``KNNImputer``: a graph
mirroring sklearn's ``transform``, exact for
:class:`loopline.model.features.StableKNNImputer`. Why, and the measured figures:
docs/onnx.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from onnx import TensorProto
from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer
from sklearn.impute import KNNImputer, SimpleImputer

from loopline.model.features import StableKNNImputer
from loopline.model.onnx.graph import Ops, as_double

if TYPE_CHECKING:
    from skl2onnx.common._topology import Scope


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
    g = Ops(scope, container)
    x = as_double(scope, operator, container)
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


def _nan_euclidean(g: Ops, x: str, fit_x: np.ndarray) -> str:
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


def _knn_column(g: Ops, x: str, dist: str, op: KNNImputer, col: int) -> str:
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
    g = Ops(scope, container)
    x = as_double(scope, operator, container)
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


#: estimator class -> (converter, shape calculator), passed to skl2onnx per call
CONVERTERS = {
    SimpleImputer: (_convert_simple_imputer, _shape_simple_imputer),
    KNNImputer: (_convert_knn_imputer, _shape_knn_imputer),
    StableKNNImputer: (_convert_knn_imputer, _shape_knn_imputer),
}
