"""A model version as the service runs it: ONNX bytes checked, one onnxruntime session.

No pickle anywhere on this path: the model is the exported ONNX graph and its card (JSON).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loopline.core.errors import LooplineError
from loopline.serving.contract import column_feeds, feeds

MODEL_FILE = "model.onnx"
CARD_FILE = "card.json"


class IntegrityError(LooplineError):
    """The model file is not the one the registry recorded."""


@dataclass(eq=False)
class ServedModel:
    """One loaded version: its session, classes and input contract."""

    version: str
    sha256: str
    classes: list[str]
    numeric: list[str]
    categorical: list[str]
    inputs: dict[str, dict[str, Any]]
    positive_class: str | None
    card: dict[str, Any] = field(repr=False)
    session: Any = field(repr=False)

    @classmethod
    def load(cls, bundle: str | Path, *, version: str, sha256: str | None,
             threads: int = 1) -> ServedModel:
        """Load ``bundle/model.onnx`` and ``bundle/card.json``.

        Raises:
            IntegrityError: the file's sha256 differs from ``sha256`` (the registry's record)
                or from the card's, so a swapped or corrupted file never serves.
            LooplineError: files missing or unreadable, or a model loopline did not export.
        """
        import onnxruntime as ort

        from loopline.model.runtime import (
            META_CATEGORICAL,
            META_CLASSES,
            META_NUMERIC,
            session_options,
        )

        bundle = Path(bundle)
        try:
            data = (bundle / MODEL_FILE).read_bytes()
            card = json.loads((bundle / CARD_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise LooplineError(f"cannot read model {version} from {bundle}: {err}") from err
        actual = hashlib.sha256(data).hexdigest()
        recorded = (card.get("model_files") or {}).get("onnx_sha256")
        expected = sha256 or recorded
        if not expected:
            raise IntegrityError(f"model {version}: no sha256 on record to check {bundle / MODEL_FILE} against")
        for what, want in (("the registry", sha256), ("its model card", recorded)):
            if want and actual != want:
                raise IntegrityError(
                    f"model {version}: {bundle / MODEL_FILE} has sha256 {actual[:16]}…, "
                    f"but {what} records {want[:16]}…; refusing to serve it")
        try:
            session = ort.InferenceSession(data, sess_options=session_options(threads),
                                           providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own types for bad graphs
            raise LooplineError(f"model {version}: onnxruntime cannot load it: {err}") from err
        meta = session.get_modelmeta().custom_metadata_map
        if META_CLASSES not in meta:
            raise LooplineError(f"model {version} was not exported by loopline (no {META_CLASSES!r})")
        names = [i.name for i in session.get_inputs()]
        numeric = json.loads(meta.get(META_NUMERIC, "[]")) or [
            i.name for i in session.get_inputs() if i.type != "tensor(string)"]
        categorical = json.loads(meta.get(META_CATEGORICAL, "[]")) or [
            i.name for i in session.get_inputs() if i.type == "tensor(string)"]
        inputs = card.get("inputs") or {}
        absent = [n for n in names if n not in inputs]
        if absent:
            raise LooplineError(f"model {version}: its card has no input contract for {absent}")
        return cls(version=version, sha256=actual, classes=[str(c) for c in json.loads(meta[META_CLASSES])],
                   numeric=[n for n in numeric if n in names],
                   categorical=[n for n in categorical if n in names],
                   inputs={n: inputs[n] for n in names}, positive_class=card.get("positive_class"),
                   card=card, session=session)

    def predict(self, records: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Labels and ``[N, n_classes]`` probabilities for validated records."""
        from loopline.model.runtime import LABEL_OUTPUT, PROBA_OUTPUT

        labels, proba = self.session.run([LABEL_OUTPUT, PROBA_OUTPUT],
                                         feeds(records, self.numeric, self.categorical))
        return labels, proba.astype(np.float64, copy=False)

    def predict_columns(self, columns: Mapping[str, Sequence[Any]], n: int) -> tuple[np.ndarray, np.ndarray]:
        """Labels and probabilities for ``n`` rows given as validated columns."""
        from loopline.model.runtime import LABEL_OUTPUT, PROBA_OUTPUT

        labels, proba = self.session.run([LABEL_OUTPUT, PROBA_OUTPUT],
                                         column_feeds(columns, n, self.numeric, self.categorical))
        return labels, proba.astype(np.float64, copy=False)

    def same_contract(self, other: ServedModel) -> bool:
        """True when ``other`` accepts exactly the requests this one does."""
        return self.inputs == other.inputs and self.classes == other.classes
