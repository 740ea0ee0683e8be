"""The baseline for bench/serving.py: the same ONNX model in the smallest BentoML service.

No validation, no logging, no metrics of its own: records in, classes and probabilities
out. Same workers, same onnxruntime session options and the same fast JSON response
(orjson) as loopline's service, so the comparison measures what loopline adds.
"""

import os

import bentoml
import numpy as np
import onnxruntime as ort
import orjson
from starlette.responses import Response

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
    async def predict(self, records: list[dict]) -> dict:  # body written with orjson
        feeds = {}
        for name, is_str in self.inputs:
            if is_str:
                feeds[name] = np.array([[r.get(name) or ""] for r in records], dtype=object)
            else:
                feeds[name] = np.array([[r.get(name)] for r in records], dtype=np.float64)
        labels, proba = self.session.run(None, feeds)
        body = {"predictions": [{"class": lab, "probabilities": p}
                                for lab, p in zip(labels.tolist(), proba.tolist(), strict=True)]}
        return Response(orjson.dumps(body), media_type="application/json")
