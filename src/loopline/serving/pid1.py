"""PID 1 of a loopline image: run the service, forward SIGTERM, reap, stop within a grace period.

``python -m loopline.serving.pid1 [--grace S] -- CMD...`` starts CMD (``bentoml serve``) in
a process group of its own. SIGTERM or SIGINT is forwarded to that whole group, so BentoML's
supervisor and every worker get it and shut down gracefully (a worker drains its inference
log on shutdown); whatever still runs after ``--grace`` seconds (default 8: within the 10
that container runtimes usually wait) is killed. As PID 1 it also reaps orphaned children.
It exits with CMD's status (128 + signal number when a signal ended it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

DEFAULT_GRACE = 8.0


def _reap() -> None:
    """Collect any exited child (PID 1 inherits orphans)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def supervise(cmd: list[str], grace: float = DEFAULT_GRACE) -> int:
    """Run ``cmd`` until it exits or a stop signal comes; its exit status."""
    child = subprocess.Popen(cmd, start_new_session=True)
    pgid = child.pid
    stopping: dict[str, float] = {}

    def stop(signum: int, _frame: object) -> None:
        if "at" not in stopping:
            stopping["at"] = time.monotonic()
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code: int | None = None
    while True:
        if code is None:
            code = child.poll()
        _reap()
        if code is not None and "at" not in stopping:
            stop(signal.SIGTERM, None)  # the service ended: no worker may outlive it
        if "at" in stopping and code is not None and not _group_alive(pgid):
            break
        if "at" in stopping and time.monotonic() - stopping["at"] > grace:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if code is None:
                code = child.wait()
            break
        time.sleep(0.05)
    _reap()
    return code if code >= 0 else 128 - code


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    grace = DEFAULT_GRACE
    if args[:1] == ["--grace"] and len(args) > 1:
        grace = float(args[1])
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print(
            "error: usage: python -m loopline.serving.pid1 [--grace S] -- CMD...", file=sys.stderr
        )
        return 2
    return supervise(args, grace)


if __name__ == "__main__":
    sys.exit(main())
