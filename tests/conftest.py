"""Shared fixtures: real temp git + DVC repos made from the reference instance."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loopline.config import defaults

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = defaults.DIR
BIN = Path(sys.executable).parent

# Tests make real commits; give git an identity that does not depend on the machine.
os.environ.setdefault("GIT_AUTHOR_NAME", "loopline tests")
os.environ.setdefault("GIT_AUTHOR_EMAIL", "tests@loopline.invalid")
os.environ.setdefault("GIT_COMMITTER_NAME", "loopline tests")
os.environ.setdefault("GIT_COMMITTER_EMAIL", "tests@loopline.invalid")
os.environ["DVC_NO_ANALYTICS"] = "1"
# OpenMP busy-waiting (HistGradientBoosting) collapses under a loaded 2-core machine when
# pytest, DVC and stage processes share it: one thread each keeps test times predictable.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"

INSTANCE_FILES = ["dvc.yaml", "params.yaml", ".dvcignore", "conf", "data/credit_data.csv",
                  "reports/champion.json",
                  "data/README.md", "src/loopline"]

# Small search and importance settings, so a whole pipeline run takes seconds.
FAST_SEARCH = """\
method: random
n_iter: 3
cv: 3
scoring: roc_auc
n_jobs: 1
halving_factor: 3
backend: local
dask_scheduler: null
"""


def default_text(rel: str) -> str:
    """A file of loopline's packaged defaults (the generic conf groups), e.g. gate/default.yaml."""
    return (DEFAULTS / rel).read_text(encoding="utf-8")


def shadow_default(root: Path, rel: str, text: str) -> Path:
    """Write conf/REL in an instance, where it shadows the packaged default of the same name."""
    path = root / "conf" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def fast_settings(root: Path) -> None:
    """FAST_SEARCH and 2 permutation repeats, as options in an instance's conf/ that shadow
    loopline's packaged defaults of the same name."""
    shadow_default(root, "search/random.yaml", FAST_SEARCH)
    shadow_default(root, "evaluate/default.yaml", default_text("evaluate/default.yaml")
                   .replace("n_repeats: 5", "n_repeats: 2"))


def sh(*args: str, cwd: Path, check: bool = True, env: dict | None = None,
       timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command, returning its completed process (text output)."""
    res = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True,
                         env=env or os.environ.copy(), timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


def loopline(*args: str, cwd: Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    return sh(str(BIN / "loopline"), *args, cwd=cwd, check=check, timeout=timeout)


def make_instance(dest: Path, *, fast: bool = True) -> Path:
    """Copy the reference instance into ``dest`` as a fresh git + DVC repo with one commit."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in INSTANCE_FILES:
        src = REPO / rel
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, target)
    sh("git", "init", "-q", "-b", "main", cwd=dest)
    sh(str(BIN / "dvc"), "init", "-q", cwd=dest)
    shutil.copy2(REPO / ".dvc" / "config", dest / ".dvc" / "config")
    (dest / ".gitignore").write_text("__pycache__/\n")
    if fast:
        fast_settings(dest)
        loopline("params", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-q", "-m", "instance", cwd=dest)
    return dest


def ran_stages(run_json: str) -> set[str]:
    """Stage names that actually ran, from `loopline run --json` output."""
    doc = json.loads(run_json)
    return {k for k, v in doc["stages"].items() if v["state"] == "done"}


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
