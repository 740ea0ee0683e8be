"""Bento and image builds (serving/bento.py): the builder is checked before anything is built."""

from __future__ import annotations

import pytest

from loopline.core.errors import LooplineError
from loopline.serving import bento


def test_no_builder_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bento, "_docker_ready", lambda: False)
    monkeypatch.setattr(bento.shutil, "which", lambda name: None)
    with pytest.raises(LooplineError, match="no image builder.*image-base.sh"):
        bento.pick_backend("auto")
    with pytest.raises(LooplineError, match="buildah is not installed"):
        bento.pick_backend("buildah")
    with pytest.raises(LooplineError, match="no Docker daemon answers"):
        bento.pick_backend("docker")
    monkeypatch.setattr(bento.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert bento.pick_backend("auto") == "buildah"


def test_containerize_checks_for_a_builder_before_building_the_bento(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from loopline.cli.app import app
    from tests.helpers import REPO

    def no_builder(backend: str) -> str:
        raise LooplineError("no image builder: test")

    built: list[str] = []
    monkeypatch.setattr(bento, "pick_backend", no_builder)
    monkeypatch.setattr(bento, "build", lambda *a, **k: built.append("bento"))
    res = CliRunner().invoke(app, ["containerize", "v9.9.9", "--repo", str(REPO)])
    assert res.exit_code != 0 and "no image builder" in str(res.exception)
    assert built == []
