"""Running commands in tests: the environment they get, ``sh`` and ``loopline``.

Importing this module sets that environment (git identity, no DVC analytics, one OpenMP
thread, the venv first on PATH), for the tests and for anything that makes an instance.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.helpers import BIN

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


def ran_stages(run_json: str) -> set[str]:
    """Stage names that actually ran, from `loopline run --json` output."""
    doc = json.loads(run_json)
    return {k for k, v in doc["stages"].items() if v["state"] == "done"}
