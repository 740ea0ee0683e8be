"""Running an exported model: onnxruntime and numpy only, nothing heavier.

:class:`OnnxModel` is the one wrapper around an onnxruntime session of a model that
:func:`loopline.model.onnx.convert.convert` exported; the gate, the parity check and the
service all use it, with the feeds of :mod:`loopline.model.feeds`. The export side
(scikit-learn, skl2onnx) is never imported here, so a service or a container image does
not pull in the training stack; onnxruntime itself is imported when a model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from loopline.core.errors import LooplineError
from loopline.model import feeds

if TYPE_CHECKING:
    import onnxruntime as ort

LABEL_OUTPUT = "label"
PROBA_OUTPUT = "probabilities"
META_CLASSES = "loopline.classes"
META_NUMERIC = "loopline.numeric"
META_CATEGORICAL = "loopline.categorical"


class IntegrityError(LooplineError):
    """The model file is not the one that was recorded (registry, model card)."""


def session_options(threads: int = 1) -> ort.SessionOptions:
    """Session options for a small (2-core) serving box.

    One intra-op thread by default, one inter-op thread, sequential execution and
    no spin-waiting: requests are small and concurrent, so parallelism belongs to
    the web server's workers, and spinning threads would burn the other core.
    Measured on the 2-core box (credit_data, 1 row / 1,000 rows): a second thread
    gains nothing on single rows (LogisticRegression 0.29 vs 0.24 ms, RF(200)
    0.23 vs 0.24 ms, HGB(200) 0.34 vs 0.26 ms) and only helps big batches of large
    forests (RF(200) 50 -> 33 ms per 1,000 rows); pass ``threads=2`` for batch
    scoring. Full graph optimisation is cheap at load time.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


def check_sha256(data: bytes, expected: Mapping[str, str | None], *, label: str,
                 path: str | os.PathLike) -> str:
    """The sha256 of ``data``, checked against each recorded digest.

    Args:
        expected: digests by who recorded them (``{"the registry": sha}``); None skips one.
        label, path: name the model and its file in the message.

    Raises:
        IntegrityError: a recorded digest differs, so a swapped or corrupted file never runs.
    """
    actual = hashlib.sha256(data).hexdigest()
    for who, want in expected.items():
        if want and actual != want:
            raise IntegrityError(f"{label}: {path} has sha256 {actual[:16]}…, but {who} "
                                 f"records {want[:16]}…; refusing to serve it")
    return actual


class OnnxModel:
    """A model exported by loopline, in one onnxruntime session.

    Args:
        model: serialized ONNX bytes or a path to a ``.onnx`` file.
        threads: intra-op threads (see :func:`session_options`).
        expected: sha256 digests the bytes must have, by who recorded them (see
            :func:`check_sha256`); none by default.
        label: names the model in error messages (e.g. ``"model v1.2.0"``).

    Attributes:
        classes: class labels as exported (ints stay ints), in probability column order.
        input_names, numeric, categorical: the model's input columns as the user names
            them, all and by kind.
        names: user column -> graph input (:func:`loopline.model.feeds.input_names`).
        sha256: digest of the model's bytes.

    Raises:
        IntegrityError: a recorded digest differs.
        LooplineError: the file is unreadable, onnxruntime cannot load it, or loopline did
            not export it (no class metadata).
    """

    def __init__(self, model: bytes | str | os.PathLike, *, threads: int = 1,
                 expected: Mapping[str, str | None] | None = None, label: str = "model") -> None:
        source = "bytes" if isinstance(model, bytes) else Path(model)
        try:
            data = model if isinstance(model, bytes) else Path(model).read_bytes()
        except OSError as err:
            raise LooplineError(f"cannot read {label} from {source}: {err}") from err
        self.sha256 = check_sha256(data, expected or {}, label=label, path=source)
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(data, sess_options=session_options(threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own types for bad graphs
            raise LooplineError(f"{label}: onnxruntime cannot load it: {err}") from err
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_CLASSES not in meta:
            raise LooplineError(f"{label} was not exported by loopline (no {META_CLASSES!r})")
        self.classes: list = json.loads(meta[META_CLASSES])
        inputs = self.session.get_inputs()
        graph = {i.name for i in inputs}
        numeric = json.loads(meta.get(META_NUMERIC, "[]")) or [
            i.name for i in inputs if i.type != "tensor(string)"]
        categorical = json.loads(meta.get(META_CATEGORICAL, "[]")) or [
            i.name for i in inputs if i.type == "tensor(string)"]
        # user column -> graph input; models without the mapping named inputs after columns
        names = json.loads(meta.get(feeds.META_INPUTS, "{}")) or {c: c for c in numeric + categorical}
        self.names: dict[str, str] = {c: g for c, g in names.items() if g in graph}
        self.numeric: list[str] = [n for n in numeric if n in self.names]
        self.categorical: list[str] = [n for n in categorical if n in self.names]
        self.input_names: list[str] = self.numeric + self.categorical

    def run(self, feeds: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Labels and float64 ``[N, n_classes]`` probabilities, in one session run."""
        labels, proba = self.session.run([LABEL_OUTPUT, PROBA_OUTPUT], feeds)
        return labels, proba.astype(np.float64, copy=False)

    def run_frame(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`run` on a model frame (a pandas DataFrame)."""
        return self.run(feeds.from_frame(X, self.numeric, self.categorical, self.names))

    def run_records(self, records: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`run` on validated records."""
        return self.run(feeds.from_records(records, self.numeric, self.categorical,
                                            self.names))

    def run_columns(self, columns: Mapping[str, Sequence[Any]],
                    n: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`run` on ``n`` rows given as validated columns."""
        return self.run(feeds.from_columns(columns, n, self.numeric, self.categorical,
                                            self.names))

    def predict_proba(self, X: Any) -> np.ndarray:
        """``[N, n_classes]`` float64 probabilities of a model frame, in :attr:`classes` order."""
        return self.run_frame(X)[1]

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels of a model frame (``classes[argmax(probabilities)]``)."""
        return self.run_frame(X)[0]
