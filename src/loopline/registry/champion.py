"""The champion: the registry's current model of the gate's comparison stage.

Resolved before ``dvc repro`` (by ``loopline run``) into reports/champion.json, which the gate
stage depends on, so DVC reruns the gate when the champion changes and a no-op repro stays a
no-op. The champion's model is fetched from the registry into .loopline/champion/ and its
path recorded next to the sha256 the registry holds for it: the gate stage reads these files
only, never Git tags. Kept free of heavy imports: ``loopline run`` calls it on every run,
including no-op ones.
"""

from __future__ import annotations

from pathlib import Path

from loopline.core.errors import LooplineError
from loopline.core.files import dumps_json, sha256_file, write_text
from loopline.core.layout import CHAMPION_DIR, CHAMPION_JSON, MODEL_ONNX
from loopline.registry import actions as registry
from loopline.registry.fetch import get


def refresh_champion(root: Path, reports: str, stage: str) -> dict:
    """Write ``<reports>/champion.json`` for ``stage`` (only when its content changed).

    With a champion, its model is fetched first (unless already there with the registry's
    sha256): ``onnx_path`` says where, or ``error`` why it could not be fetched, and the gate
    fails its champion checks with that reason.
    """
    doc: dict = {"stage": stage, "version": None}
    try:
        current = registry.which(stage, root)
    except LooplineError:  # nothing assigned to the stage yet: no champion
        current = None
    if current:
        meta = current.get("metadata") or {}
        doc.update({"version": current["version"], "tag": current.get("tag"),
                    "commit": current.get("commit"),
                    "onnx_sha256": (meta.get("model") or {}).get("onnx_sha256")})
        doc.update(fetch_model(root, doc["version"], doc["onnx_sha256"]))
    path = root / reports / CHAMPION_JSON
    text = dumps_json(doc)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        write_text(path, text)
    return doc


def fetch_model(root: Path, version: str, sha256: str | None) -> dict:
    """``{"onnx_path": ...}`` once ``version``'s model is in CHAMPION_DIR, else
    ``{"error": ...}``."""
    dest = root / CHAMPION_DIR
    model = dest / MODEL_ONNX
    if not (sha256 and model.is_file() and sha256_file(model) == sha256):
        try:
            get(version, dest, root)
        except Exception as err:  # any failure: the gate reports it as the champion's error
            text = str(err)
            return {"error": f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"}
    ignore = dest / ".gitignore"  # state, never committed, whatever the repo's .gitignore says
    if not ignore.is_file():
        write_text(ignore, "*\n")
    return {"onnx_path": f"{CHAMPION_DIR}/{MODEL_ONNX}"}
