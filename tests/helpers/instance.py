"""Instances for tests: real git + DVC repos made from the reference instance."""

from __future__ import annotations

import shutil
from pathlib import Path

from loopline.config import defaults
from tests.helpers import BIN, REPO
from tests.helpers.commands import loopline, sh

DEFAULTS = defaults.DIR

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
    (dest / ".gitignore").write_text("__pycache__/\n/.loopline/\n")  # as every instance has
    if fast:
        fast_settings(dest)
        loopline("params", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-q", "-m", "instance", cwd=dest)
    return dest
