"""The ONNX runtime wrapper (model/runtime.py): graph contract, sha256 and metadata checks."""

from __future__ import annotations

import numpy as np
import pytest

from loopline.model.onnx.convert import convert
from loopline.model.runtime import OnnxModel
from tests.helpers.model_data import (
    CATEGORICAL,
    NUMERIC,
    fit_pipeline,
)


def test_onnx_model_from_path_and_graph_contract(frames, tmp_path):
    pipe = fit_pipeline(frames, "hgb", "median", "most_frequent")
    path = tmp_path / "model.onnx"
    path.write_bytes(convert(pipe, NUMERIC, CATEGORICAL))
    model = OnnxModel(path)
    assert model.input_names == NUMERIC + CATEGORICAL
    assert model.classes == ["bad", "good"]
    proba = model.predict_proba(frames["test"])
    assert proba.shape == (len(frames["test"]), 2) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    labels = model.predict(frames["test"])
    assert list(labels) == list(np.asarray(model.classes, dtype=object)[proba.argmax(axis=1)])


def test_onnx_model_checks_the_recorded_sha256_and_the_metadata(frames):
    import hashlib

    from onnx import TensorProto, helper

    from loopline.core.errors import LooplineError
    from loopline.model.runtime import IntegrityError

    onx = convert(fit_pipeline(frames, "logreg", "mean", "missing"), NUMERIC, CATEGORICAL)
    sha = hashlib.sha256(onx).hexdigest()
    assert OnnxModel(onx, expected={"the registry": sha, "its card": None}).sha256 == sha
    with pytest.raises(IntegrityError, match=f"but the registry records {'0' * 16}"):
        OnnxModel(onx, expected={"the registry": "0" * 64}, label="model v9")
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None, 1])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None, 1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    foreign = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    foreign.ir_version = 8
    with pytest.raises(LooplineError, match="not exported by loopline"):
        OnnxModel(foreign.SerializeToString())
    with pytest.raises(LooplineError, match="onnxruntime cannot load it"):
        OnnxModel(b"not a model")
