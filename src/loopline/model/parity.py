"""Parity of an exported model: ONNX and scikit-learn predictions, row by row.

The export stage refuses a model whose ONNX graph does not give every test row the
class and (within ``atol``) the probabilities that scikit-learn gives.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from loopline.model.runtime import OnnxModel


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
    ox = model.run_frame(X)
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
