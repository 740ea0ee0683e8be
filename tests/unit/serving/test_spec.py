"""Which model a service runs (serving/spec.py): with no version in prod, the workspace
export, checked against its card only; a registered version, against its registry tag."""

from __future__ import annotations

import hashlib
import json

import pytest

from loopline.core.errors import LooplineError
from loopline.registry import actions as registry
from loopline.serving.spec import resolve_model
from tests.helpers.registry_repo import Repo


def test_the_local_export_is_checked_against_its_card_and_says_so(repo: Repo) -> None:
    repo.model("a")
    entry = resolve_model(repo.path, None)
    assert entry["source"] == "local export, no version in prod: checked against its card only"
    model, card = repo.path / "models" / "model.onnx", repo.path / "models" / "card.json"
    model.write_bytes(b"swapped")  # tampered, card unchanged: one clear line
    with pytest.raises(LooplineError, match=r"^models/model\.onnx \(sha256 [0-9a-f]{12}\) is not "
                                            r"the model its card records .* no version is "
                                            r"assigned to prod, so the workspace model is "
                                            r"checked against its card only"):
        resolve_model(repo.path, None)
    doc = json.loads(card.read_text())  # the card edited to match: only the registry would know
    doc["model_files"]["onnx_sha256"] = hashlib.sha256(b"swapped").hexdigest()
    card.write_text(json.dumps(doc))
    assert resolve_model(repo.path, None)["source"].endswith("checked against its card only")


def test_a_registered_version_is_checked_against_its_registry_tag(repo: Repo) -> None:
    commit = repo.register("a")["commit"]
    registry.promote("v0.1.0", "prod", root=repo.path)
    entry = resolve_model(repo.path, None)
    assert entry["source"] == "registry" and entry["version"] == "v0.1.0"
    assert entry["sha256"] == hashlib.sha256(repo.files[commit]["model.onnx"]).hexdigest()
