"""Inference logs written by the real writer, for the tests of shipping and reading them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from loopline.serving.inference_log import InferenceLog

T0 = datetime(2026, 9, 21, 13, 30, tzinfo=UTC).timestamp()


def write_log(path: Path, n: int, *, prefix: str = "r", t0: float = T0, step: float = 600.0,
              version: str = "v1", feedback: Sequence[tuple[str, int, str]] = (),
              errors: int = 0) -> None:
    """``n`` one-record requests ``step`` seconds apart (and feedback, errors) into ``path``."""
    log = InferenceLog(path, flush_interval=30.0)
    for i in range(n):
        log.predictions(f"{prefix}{i}", t0 + i * step, version, [{"x": i, "c": "a" * (i % 3)}],
                        np.array(["yes" if i % 2 else "no"], dtype=object),
                        np.array([[0.4, 0.6] if i % 2 else [0.9, 0.1]]), ["no", "yes"], 1.5)
    if feedback:
        log.feedback(feedback, t0 + n * step)
    for i in range(errors):
        log.request_error(t0 + i * step + 1, "/predict", 400, version)
    log.close()
