"""What running an exported model needs, and nothing heavier: onnxruntime and numpy.

The export side (:mod:`loopline.model.onnx_export`, which pulls in scikit-learn and skl2onnx)
and the serving side (:mod:`loopline.serving`) share these names, so a service or a
container image never imports the training stack.
"""

from __future__ import annotations

import onnxruntime as ort

LABEL_OUTPUT = "label"
PROBA_OUTPUT = "probabilities"
META_CLASSES = "loopline.classes"
META_NUMERIC = "loopline.numeric"
META_CATEGORICAL = "loopline.categorical"


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
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts
