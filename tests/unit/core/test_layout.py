"""What makes a directory a loopline repo (core/layout.py: find_root)."""

from __future__ import annotations

import pytest

from loopline.core.errors import LooplineError
from loopline.core.layout import find_root
from tests.helpers import REPO


def test_find_root_from_subdirectory():
    assert find_root(REPO / "src" / "loopline") == REPO
    assert find_root(REPO) == REPO


def test_find_root_outside_repo_raises(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    with pytest.raises(LooplineError, match=r"not a loopline repo") as info:
        find_root(tmp_path / "a" / "b")
    assert str((tmp_path / "a" / "b").resolve()) in str(info.value)


def test_find_root_needs_both_dvc_yaml_and_conf(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    with pytest.raises(LooplineError):
        find_root(tmp_path)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text("seed: 1\n")
    (tmp_path / "sub").mkdir()
    assert find_root(tmp_path / "sub") == tmp_path.resolve()
