"""PID 1 of the image (serving/pid1.py): SIGTERM reaches every process of the service."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# A "service" that starts two workers which record a clean stop, like BentoML's supervisor.
SERVICE = r"""
import os, signal, subprocess, sys, time
out = sys.argv[1]
worker = ("import signal, sys, time\n"
          "def bye(*_):\n"
          "    open(sys.argv[1], 'a').write('flushed\\n'); sys.exit(0)\n"
          "signal.signal(signal.SIGTERM, bye)\n"
          "open(sys.argv[1] + '.ready', 'a').write('x')\n"
          "while True: time.sleep(0.05)\n")
procs = [subprocess.Popen([sys.executable, "-c", worker, out]) for _ in range(2)]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the supervisor leaves its workers behind
while True:
    time.sleep(0.05)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_stops_every_worker_and_lets_them_flush(tmp_path: Path) -> None:
    out = tmp_path / "log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loopline.serving.pid1",
            "--grace",
            "5",
            "--",
            sys.executable,
            "-c",
            SERVICE,
            str(out),
        ]
    )
    ready = Path(f"{out}.ready")
    for _ in range(200):
        if ready.exists() and len(ready.read_text()) == 2:
            break
        time.sleep(0.05)
    assert len(ready.read_text()) == 2
    pgid = int(
        subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True
        ).stdout.split()[0]
    )
    members = subprocess.run(
        ["ps", "-o", "pid=", "-g", str(pgid)], capture_output=True, text=True
    ).stdout.split()
    assert len(members) == 3  # the service and its two workers
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert out.read_text().splitlines() == ["flushed", "flushed"]
    assert not [pid for pid in map(int, members) if _alive(pid)]


def test_a_stray_worker_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    stubborn = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"
    )
    code = subprocess.run(
        [
            sys.executable,
            "-m",
            "loopline.serving.pid1",
            "--grace",
            "1",
            "--",
            "bash",
            "-c",
            f"{sys.executable} -c '{stubborn}' & sleep 0.3; exit 3",
        ],
        timeout=30,
    ).returncode
    assert code == 3  # and it returned: the worker that ignores SIGTERM did not keep it waiting


def test_usage_error_without_a_command() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "loopline.serving.pid1"], capture_output=True, text=True
    )
    assert res.returncode == 2 and res.stderr.startswith("error: usage")
