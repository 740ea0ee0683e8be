"""Export a fitted loopline pipeline to ONNX.

The whole ``Pipeline([("prep", ColumnTransformer), ("model", classifier)])`` is exported,
so serving needs only onnxruntime and a model frame
(:func:`loopline.model.features.to_model_frame`). Graph contract (what :func:`convert`
produces):

* one input per column: numeric columns ``tensor(double)[N, 1]``, categorical columns
  ``tensor(string)[N, 1]`` with ``""`` for missing; skl2onnx names the inputs after the
  columns in word characters, and metadata ``loopline.inputs`` maps each user column to
  its input (:func:`loopline.model.feeds.input_names`);
* output ``label`` (``classes[argmax(probabilities)]``, sklearn's rule, first class on
  ties) and ``probabilities`` (plain ``[N, n_classes]`` tensor, no ZipMap, column order
  of ``classes``); probabilities are float32 for tree models, float64 otherwise;
* metadata ``loopline.classes`` / ``loopline.numeric`` / ``loopline.categorical`` (JSON),
  so :class:`loopline.model.runtime.OnnxModel` needs nothing but onnxruntime;
* opsets ``{"": 18, "ai.onnx.ml": 3}``, listed in a fixed order: the same model gives
  the same bytes.

The numeric path is float64 end to end, through the custom converters of
:mod:`loopline.model.onnx.imputers` and :mod:`loopline.model.onnx.trees`, installed per
call (no global registration). Why, limits and measured parity: docs/onnx.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import sklearn
from onnx import ModelProto, TensorProto, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from loopline.model.feeds import META_INPUTS, input_names
from loopline.model.onnx import imputers, trees
from loopline.model.runtime import (
    LABEL_OUTPUT,
    META_CATEGORICAL,
    META_CLASSES,
    META_NUMERIC,
    PROBA_OUTPUT,
)

TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
_CLASSES_CONST = "loopline_class_labels"
#: estimator class -> (converter, shape calculator): loopline's own, in double precision
CONVERTERS = {**imputers.CONVERTERS, **trees.CONVERTERS}


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
        custom_conversion_functions={k: v[0] for k, v in CONVERTERS.items()},
        custom_shape_calculators={k: v[1] for k, v in CONVERTERS.items()},
    )
    if [o.name for o in onx.graph.output] != [LABEL_OUTPUT, PROBA_OUTPUT]:
        names = [o.name for o in onx.graph.output]
        raise ValueError(f"expected a classifier with outputs label/probabilities, got {names}")
    _relabel(onx, model.classes_)
    names = input_names([*numeric, *categorical], [i.name for i in onx.graph.input])
    helper.set_model_props(
        onx,
        {
            META_CLASSES: _json_classes(model.classes_),
            META_INPUTS: json.dumps(names, ensure_ascii=False),
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
