"""What registration refuses (registry/checks.py): a failed or missing gate, a dirty tree,
a model that the committed dvc.lock did not produce."""

from __future__ import annotations

import pytest

from loopline.core.errors import LooplineError
from loopline.registry import actions as registry
from tests.helpers.registry_repo import ART, Repo, git


def test_failed_or_missing_gate_refuses_register(repo: Repo) -> None:
    repo.model("a", verdict="fail")
    with pytest.raises(LooplineError,
                       match=r"reports/gate\.json: the gate failed \(roc_auc 0\.6 >= 0\.7\)"):
        registry.register(repo.path)
    with pytest.raises(LooplineError, match="--force and --reason go together"):
        registry.register(repo.path, force=True)
    (repo.path / "reports" / "gate.json").unlink()
    git(repo.path, "commit", "-qam", "no gate")
    with pytest.raises(LooplineError, match="no gate verdict for this model: the gate stage did not finish"):
        registry.register(repo.path)
    assert repo.tags() == []


def test_dirty_tree_is_refused(repo: Repo) -> None:
    repo.model("a")
    (repo.path / "params.yaml").write_text(f"artifact: {ART}\nseed: 7\n")
    with pytest.raises(LooplineError, match=r"uncommitted changes \(params\.yaml\)"):
        registry.register(repo.path)
    assert repo.tags() == []


def test_workspace_model_not_from_dvc_lock_is_refused(repo: Repo) -> None:
    repo.model("a")
    (repo.path / "models" / "model.onnx").write_bytes(b"retrained but not committed")
    with pytest.raises(LooplineError, match=r"models/model\.onnx in the workspace .* is not the "
                                            r"one the committed dvc\.lock produced"):
        registry.register(repo.path)
    (repo.path / "models" / "model.onnx").unlink()
    with pytest.raises(LooplineError, match=r"models/model\.onnx is missing"):
        registry.register(repo.path)
    assert repo.tags() == []
