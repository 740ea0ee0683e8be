"""Running other programs (git, dvc, bentoml, buildah): one runner, one error format.

A failure a user can act on is a :class:`~loopline.core.errors.LooplineError` whose first
line names what failed, where, and the tool's own first error line; the tool's last lines
follow as details.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from loopline.core.errors import LooplineError


def first_line(text: str) -> str:
    """The line of a tool's output that says what went wrong (``fatal:``/``error:`` first)."""
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.lower().startswith(("fatal:", "error:"))]
    return (fatal or lines or ["(no output)"])[0]


def run(cmd: Sequence[str], *, cwd: str | os.PathLike[str] | None = None, what: str | None = None,
        input: str | None = None, env: Mapping[str, str] | None = None, check: bool = True,
        capture: bool = True, timeout: float | None = None,
        pass_fds: Sequence[int] = ()) -> subprocess.CompletedProcess:
    """Run ``cmd`` (text in and out); with ``check``, a non-zero exit raises.

    ``pass_fds`` are inherited by the program (e.g. a lock that must stay held for as long
    as the program runs, even when this process is killed).

    Raises:
        LooplineError: the program cannot be started, timed out, or (``check``) failed.
    """
    what = what or Path(cmd[0]).name
    try:
        res = subprocess.run(list(cmd), cwd=cwd, input=input, capture_output=capture, text=True,
                             encoding="utf-8", errors="replace",
                             env=dict(env) if env is not None else None, timeout=timeout,
                             pass_fds=tuple(pass_fds))
    except OSError as err:
        raise LooplineError(f"cannot run {what}: {err.strerror or err}") from None
    except subprocess.TimeoutExpired:
        raise LooplineError(f"{what} did not finish within {timeout:g} s") from None
    if check and res.returncode != 0:
        out = (res.stderr or "") + "\n" + (res.stdout or "")
        tail = [ln for ln in out.strip().splitlines() if ln.strip()][-12:]
        where = f" in {cwd}" if cwd is not None else ""
        raise LooplineError(f"{what} failed{where} (exit {res.returncode}): {first_line(out)}",
                            details="\n".join(tail) if len(tail) > 1 else "")
    return res
