"""The champion: the registry's current model of the gate's comparison stage.

Resolved into reports/champion.json, which the gate stage depends on, so DVC reruns the
gate when the champion changes and a no-op repro stays a no-op. Kept free of heavy imports:
``loopline run`` calls it on every run, including no-op ones.
"""

from __future__ import annotations

from pathlib import Path

CHAMPION_FILE = "champion.json"


def refresh_champion(root: Path, reports: str, stage: str) -> dict:
    """Write ``<reports>/champion.json`` for ``stage``, only when its content changed."""
    from loopline.core.errors import LooplineError
    from loopline.core.files import dumps_json, write_text
    from loopline.registry import actions as registry

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
    path = root / reports / CHAMPION_FILE
    text = dumps_json(doc)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        write_text(path, text)
    return doc
