"""The registry's settings read from params.yaml (registry/settings.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopline.core.errors import LooplineError
from loopline.registry import actions as registry
from tests.helpers.registry_repo import ART, Repo


def test_stages_come_from_params(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", stages=["dev", "live"])
    repo.register("a")
    assert registry.promote("v0.1.0", "live", root=repo.path)["tag"] == f"{ART}#live#1"
    with pytest.raises(LooplineError, match="unknown stage 'prod': valid stages are dev, live"):
        registry.which("prod", root=repo.path)
