"""Fixtures that unit and end-to-end tests share: instances of the reference, synthetic data.

The helpers these fixtures use (``sh``, ``loopline``, ``make_instance``, ...) live in
tests/helpers, where any test imports them from.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# Plain asserts in the helpers report their values like those in the tests.
pytest.register_assert_rewrite("tests.helpers")

from tests.helpers.churn import churn_frame  # noqa: E402
from tests.helpers.commands import loopline, sh  # noqa: E402
from tests.helpers.instance import make_instance  # noqa: E402


@pytest.fixture(scope="session")
def instance_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh instance, made once per session (shared, do not modify)."""
    return make_instance(tmp_path_factory.mktemp("template") / "repo")


@pytest.fixture()
def instance(instance_template: Path, tmp_path: Path) -> Path:
    """A private fresh instance (a git + DVC repo with one commit, nothing run yet)."""
    dest = tmp_path / "repo"
    shutil.copytree(instance_template, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def built_instance(instance_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An instance on which the whole pipeline has run once (shared, do not modify)."""
    root = tmp_path_factory.mktemp("built") / "repo"
    shutil.copytree(instance_template, root, symlinks=True)
    loopline("run", "--json", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-q", "-m", "first run", cwd=root)
    return root


@pytest.fixture()
def built_copy(built_instance: Path, tmp_path: Path) -> Path:
    """A private copy of the built instance (with its DVC cache) to change freely."""
    dest = tmp_path / "copy"
    shutil.copytree(built_instance, dest, symlinks=True)
    return dest


@pytest.fixture()
def churn_csv(tmp_path: Path) -> Path:
    path = tmp_path / "churn.csv"
    churn_frame(400).to_csv(path, index=False)
    return path
