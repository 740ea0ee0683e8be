"""DVC's files and commands as loopline uses them: dvc.lock, the cache, and ``python -m dvc``.

Only DVC's documented file formats and command line are used here; the one place that
reaches into DVC's internals is :mod:`loopline.pipeline.dvc_internals`.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from loopline.core.errors import LooplineError
from loopline.core.layout import DVC_LOCK


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML with libyaml where PyYAML has it (dvc.lock grows with the pipeline)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as err:
        raise LooplineError(f"{source} is not valid YAML: {str(err).splitlines()[0]}") from None


def lock_stages(lock_text: str, source: str = DVC_LOCK) -> dict[str, dict]:
    """The ``stages`` of a dvc.lock text, by name ({} when it has none)."""
    lock = load_yaml(lock_text, source) or {}
    stages = lock.get("stages", {}) if isinstance(lock, dict) else {}
    return {str(k): v or {} for k, v in stages.items()} if isinstance(stages, dict) else {}


def read_lock(root: Path) -> dict[str, dict]:
    """The stages of the work tree's dvc.lock ({} when there is none)."""
    path = root / DVC_LOCK
    if not path.is_file():
        return {}
    return lock_stages(path.read_text(encoding="utf-8"), str(path))


def lock_outs(lock_text: str, source: str = DVC_LOCK) -> dict[str, dict]:
    """The ``outs`` of every stage in a dvc.lock text, by path."""
    outs: dict[str, dict] = {}
    for st in lock_stages(lock_text, source).values():
        for out in st.get("outs", []) or []:
            if isinstance(out, dict) and "path" in out:
                outs[str(out["path"])] = out
    return outs


def lock_md5(outs: dict[str, dict], path: str, where: str) -> str:
    """The md5 a dvc.lock records for the output ``path``."""
    out = outs.get(path)
    md5 = out.get("md5") if out else None
    if not md5:
        raise LooplineError(f"dvc.lock {where} has no md5 for the output {path}")
    return str(md5)


def cache_dir(root: Path) -> Path:
    """The DVC cache directory (``cache.dir`` in .dvc/config.local or .dvc/config)."""
    for name in ("config.local", "config"):
        path = root / ".dvc" / name
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        m = re.search(r"^\[cache\][^\[]*?^\s*dir\s*=\s*(.+?)\s*$", text, re.M | re.S)
        if m:
            d = Path(m.group(1).strip("'\""))
            return d if d.is_absolute() else (root / ".dvc" / d).resolve()
    return root / ".dvc" / "cache"


def cache_paths(root: Path, md5: str) -> list[Path]:
    """Where DVC keeps an object: DVC 3 (files/md5/ab/cdef…), then DVC 2 (ab/cdef…)."""
    cache = cache_dir(root)
    return [cache / "files" / "md5" / md5[:2] / md5[2:], cache / md5[:2] / md5[2:]]


def dvc_env() -> dict[str, str]:
    """Environment for dvc: the venv's bin first (stage commands call ``loopline``)."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def dvc_command(*args: str) -> list[str]:
    """``python -m dvc ARGS`` with this interpreter (the dvc that loopline is installed with)."""
    return [sys.executable, "-m", "dvc", *args]


def dvc(root: Path, *args: str, check: bool = True, capture: bool = True):  # noqa: ANN201
    """Run ``dvc ARGS`` in ``root``; a failure names the command and dvc's own error line."""
    from loopline.core.proc import run

    return run(dvc_command(*args), cwd=root, what=f"dvc {args[0]}", env=dvc_env(), check=check,
               capture=capture)


def sync_remote(root: Path, verb: str) -> bool:
    """``dvc pull`` (what the remote has) or ``dvc push``, when a DVC remote is configured.

    dvc's own progress goes to the terminal. Returns False when there is no remote.

    Raises:
        LooplineError: ``dvc remote list`` or the transfer failed.
    """
    if not dvc(root, "remote", "list").stdout.strip():
        return False
    res = dvc(root, verb, *(["--allow-missing"] if verb == "pull" else []), check=False,
              capture=False)
    if res.returncode != 0:
        raise LooplineError(f"dvc {verb} failed (exit {res.returncode})")
    return True
