"""The baseline for bench/serving.py: the same ONNX model in the smallest BentoML service.

No validation, no logging, no metrics of its own: records in, classes and probabilities
out. Same workers, same onnxruntime session options as loopline's service.
"""

import os

import bentoml
import numpy as np
import onnxruntime as ort

MODEL = os.environ["MINIMAL_ONNX"]
WORKERS = int(os.environ.get("MINIMAL_WORKERS", "2"))


@bentoml.service(name="minimal-onnx", workers=WORKERS)
class Minimal:
    def __init__(self) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(MODEL, opts, providers=["CPUExecutionProvider"])
        self.inputs = [(i.name, i.type == "tensor(string)") for i in self.session.get_inputs()]

    @bentoml.api
    async def predict(self, records: list[dict]) -> dict:
        feeds = {}
        for name, is_str in self.inputs:
            if is_str:
                feeds[name] = np.array([[r.get(name) or ""] for r in records], dtype=object)
            else:
                feeds[name] = np.array([[r.get(name)] for r in records], dtype=np.float64)
        labels, proba = self.session.run(None, feeds)
        return {"predictions": [{"class": lab, "probabilities": p}
                                for lab, p in zip(labels.tolist(), proba.tolist())]}
