"""Building blocks of loopline's custom skl2onnx converters: nodes and constants.

skl2onnx calls a converter with its ``Scope`` (unique names), the operator (the fitted
estimator and its input/output variables) and a container (nodes, initializers). Only the
methods named in tests/unit/model/test_onnx.py are used on them: ``Scope`` lives in
skl2onnx's private ``common._topology``, so skl2onnx is bounded in pyproject.toml and that
test names whatever moves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from onnx import TensorProto
from skl2onnx.common.data_types import DoubleTensorType

if TYPE_CHECKING:
    from skl2onnx.common._topology import Scope


def node_name(scope: Scope, base: str) -> str:
    """Unique node name inside the skl2onnx scope."""
    return scope.get_unique_operator_name(base)


class Ops:
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
            op_type, list(inputs), [out], name=node_name(self.scope, op_type), **attrs
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
            name=node_name(self.scope, "TopK"),
        )
        return values, indices


def single_input(scope: Scope, operator: Any, container: Any) -> str:
    """Name of one tensor holding all of the operator's inputs (Concat if several).

    skl2onnx's ``concatenate_variables`` goes through ``FeatureVectorizer``, which
    rounds to float32; a plain ``Concat`` keeps double.
    """
    names = [v.full_name for v in operator.inputs]
    if len(names) == 1:
        return names[0]
    out = scope.get_unique_variable_name("merged")
    container.add_node("Concat", names, [out], axis=1, name=node_name(scope, "Concat"))
    return out


def as_double(scope: Scope, operator: Any, container: Any) -> str:
    """Name of the operator's (single) input as a double tensor, casting if needed."""
    name = single_input(scope, operator, container)
    if isinstance(operator.inputs[0].type, DoubleTensorType):
        return name
    out = scope.get_unique_variable_name("as_double")
    container.add_node("Cast", [name], [out], to=TensorProto.DOUBLE, name=node_name(scope, "Cast"))
    return out
