"""The files an instance shares with the reference, one copy (gitops/scaffold/sources.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopline.core.errors import LooplineError
from loopline.gitops.scaffold import sources
from tests.helpers import REPO
from tests.helpers.commands import sh


def test_shared_files_are_read_where_they_are_in_a_checkout() -> None:
    """dvc.yaml, conf/config.yaml and the workflows exist once: the reference's, at the root."""
    root, names = sources.locate()
    assert Path(root) == REPO and names == {rel: rel for rel in sources.SHIPPED}
    shared = sources.shared_files()
    assert {"dvc.yaml", "conf/config.yaml", ".github/workflows/pr.yml"} <= set(shared)
    assert shared == {rel: (REPO / rel).read_bytes() for rel in shared}


def test_no_copies_of_them_in_the_package_source() -> None:
    """The wheel's copies are made by the build (force-include), never committed."""
    tracked = sh("git", "ls-files", "src/loopline/gitops", cwd=REPO).stdout.split()
    copies = [f for f in tracked if not f.endswith(".py")
              and not f.startswith("src/loopline/gitops/actions/")]  # loopline ci's own actions
    assert not copies, tracked


def test_the_wheel_build_copies_exactly_the_shared_files() -> None:
    """pyproject.toml's force-include is the map that sources.locate reads a wheel by."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    forced = project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert forced == {rel: f"loopline/gitops/{sources.TEMPLATES}/{name}"
                      for rel, name in sources.SHIPPED.items()}


def test_no_dvc_yaml_inside_the_package() -> None:
    """DVC collects every dvc.yaml of a repo: one under src/ would break the root pipeline."""
    assert not list((REPO / "src").rglob("dvc.yaml"))


def test_workflows_are_optional(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    for rel in sources.REQUIRED:
        (tmp_path / rel).write_text("x: 1\n")
    where = (tmp_path, {rel: rel for rel in sources.SHIPPED})
    assert set(sources.shared_files(where)) == set(sources.REQUIRED)
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    assert set(sources.shared_files(where)) == set(sources.REQUIRED)
    (tmp_path / ".github" / "workflows" / "pr.yml").write_text("on: pull_request\n")
    assert sources.shared_files(where)[".github/workflows/pr.yml"] == b"on: pull_request\n"
    (tmp_path / "dvc.yaml").unlink()
    with pytest.raises(LooplineError, match="dvc.yaml is missing"):
        sources.shared_files(where)


WORKFLOWS = REPO / ".github" / "workflows"


def test_loopline_init_takes_these_workflows() -> None:
    """The workflows exist once, here: `loopline init` copies them from the checkout (and a
    wheel from the copies its build made of them)."""
    from loopline.gitops.scaffold.sources import shared_files

    ours = {f".github/workflows/{p.name}": p.read_bytes() for p in WORKFLOWS.glob("*.yml")}
    assert ours and {rel: raw for rel, raw in shared_files().items()
                     if rel.startswith(".github/")} == ours
