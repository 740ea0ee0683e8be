"""A registry version as the service serves it: its bundle (model.onnx + card.json), checked.

No pickle anywhere on this path: the model is the exported ONNX graph, run by
:class:`loopline.model.runtime.OnnxModel`, and its card (JSON) gives the input contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.core.errors import LooplineError
from loopline.core.layout import CARD_JSON, MODEL_ONNX

if TYPE_CHECKING:
    from loopline.model.runtime import OnnxModel


@dataclass(frozen=True, eq=False)
class ServedVersion:
    """One loaded version: its model, classes (as JSON strings) and input contract."""

    version: str
    model: OnnxModel = field(repr=False)
    classes: list[str]
    inputs: dict[str, dict[str, Any]]
    positive_class: str | None

    @property
    def sha256(self) -> str:
        return self.model.sha256

    def same_contract(self, other: ServedVersion) -> bool:
        """True when ``other`` accepts exactly the requests this one does."""
        return self.inputs == other.inputs and self.classes == other.classes


def load(bundle: str | Path, *, version: str, sha256: str | None,
         threads: int = 1) -> ServedVersion:
    """Load ``bundle``'s model.onnx and card.json.

    Raises:
        IntegrityError: the file's sha256 differs from ``sha256`` (the registry's record)
            or from the card's, or neither is recorded, so a swapped or corrupted file never
            serves.
        LooplineError: files missing or unreadable, or a model loopline did not export.
    """
    from loopline.core.files import load_json
    from loopline.model.runtime import IntegrityError, OnnxModel

    bundle = Path(bundle)
    label = f"model {version}"
    card = load_json(bundle / CARD_JSON, f"the card of {label}")
    recorded = (card.get("model_files") or {}).get("onnx_sha256")
    if not (sha256 or recorded):
        raise IntegrityError(f"{label}: no sha256 on record to check {bundle / MODEL_ONNX} against")
    model = OnnxModel(bundle / MODEL_ONNX, threads=threads, label=label,
                      expected={"the registry": sha256, "its model card": recorded})
    inputs = card.get("inputs") or {}
    absent = [n for n in model.input_names if n not in inputs]
    if absent:
        raise LooplineError(f"{label}: its card has no input contract for {absent}")
    return ServedVersion(version=version, model=model, classes=[str(c) for c in model.classes],
                         inputs={n: inputs[n] for n in model.input_names},
                         positive_class=card.get("positive_class"))


def locate(entry: dict[str, Any], spec_dir: Path) -> Path:
    """The bundle of a spec entry: a BentoML model (in a Bento) or a directory."""
    tag = entry.get("bentoml_model")
    if tag:
        import bentoml

        stored = bentoml.models.BentoModel(tag).stored
        if stored is None:
            raise LooplineError(f"BentoML model {tag} is not in the model store")
        return Path(stored.path)
    bundle = Path(entry["bundle"])
    return bundle if bundle.is_absolute() else spec_dir / bundle


def check(entry: dict[str, Any], spec_dir: Path) -> dict[str, Any]:
    """The card of a spec entry, once its model file is the registry's (no session loaded).

    The service calls this at import, so a wrong file stops it before any worker starts.

    Raises:
        IntegrityError: the file's sha256 is not the one the registry records.
        LooplineError: the model file or its card is missing.
    """
    from loopline.core.files import load_json
    from loopline.model.runtime import check_sha256

    bundle = locate(entry, spec_dir)
    path = bundle / MODEL_ONNX
    if not path.is_file():
        raise LooplineError(f"model {entry['version']}: {path} does not exist")
    check_sha256(path.read_bytes(), {"the registry": entry["sha256"]},
                 label=f"model {entry['version']}", path=path)
    return load_json(bundle / CARD_JSON, f"the card of model {entry['version']}")


def check_spec(spec: dict[str, Any], spec_dir: Path) -> dict[str, Any]:
    """:func:`check` the spec's model, its rollout candidate and the shadow; the model's card.

    Raises:
        LooplineError: as :func:`check`, or the shadow takes other inputs than the model.
    """
    card = check(spec["model"], spec_dir)
    rollout = spec["model"].get("rollout")
    if rollout and check(rollout, spec_dir).get("inputs") != card.get("inputs"):
        raise LooplineError(f"rollout candidate {rollout['version']} takes different inputs than "
                            f"{spec['model']['version']}: it cannot share its traffic")
    if spec.get("shadow") and check(spec["shadow"], spec_dir).get("inputs") != card.get("inputs"):
        raise LooplineError(f"shadow {spec['shadow']['version']} takes different inputs than "
                            f"{spec['model']['version']}: its predictions would be meaningless")
    return card
