"""The simulation's service: the sandbox's prod model served on 127.0.0.1, one worker.

It is started as ``loopline serve prod`` starts it: the model of prod is fetched from the
registry into a bundle, the service spec is written, and BentoML serves
:class:`loopline.serving.service.LooplineService` in its own process group.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from loopline.core.errors import LooplineError
from loopline.core.layout import STATE_DIR

STAGE = "prod"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """The sandbox's ``prod`` model served on 127.0.0.1, one worker."""

    def __init__(self, work: Path, token_env: str) -> None:
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token_env = token_env
        self.proc: subprocess.Popen | None = None
        self.log = work / STATE_DIR / "simulate-serve.log"

    def command(self) -> tuple[list[str], dict[str, str]]:
        """The BentoML command and environment, with the spec of prod written for it."""
        from loopline.config.params import load_params
        from loopline.serving.log_store import OFF, STORE_ENV
        from loopline.serving.spec import prepare_run

        run = prepare_run(self.work, load_params(self.work), STAGE, port=self.port, workers=1)
        # the sandbox's loop is one machine: its log stays local, whatever the shell exports
        return run.argv, {**run.env, STORE_ENV: OFF}

    def start(self, timeout: float = 180.0) -> None:
        import httpx

        self.log.parent.mkdir(parents=True, exist_ok=True)
        argv, env = self.command()
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(argv, cwd=self.work, stdout=out, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
                raise LooplineError("the simulated service exited: " + " | ".join(tail))
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise LooplineError(f"the simulated service did not become ready in {timeout:.0f} s")

    def reload(self) -> None:
        """Switch the service to the version now in prod."""
        from loopline.monitoring.actions import reload_service

        res = reload_service(self.url, STAGE, self.token_env)
        if not res.get("done"):
            raise LooplineError(f"/admin/reload answered {res.get('status_code')}: "
                                f"{res.get('why') or 'no reason given'}")

    def stop(self) -> None:
        import signal

        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def wait_logged(log: Path, since: float, requests: int, labels: int, timeout: float = 30.0) -> None:
    """Until the service's log holds the step's requests and labels (it writes in the background)."""
    from loopline.serving.inference_log import connect

    deadline = time.monotonic() + timeout
    while True:
        conn = connect(log, readonly=True)
        try:
            got = conn.execute("SELECT COUNT(*) FROM requests WHERE ts >= ?", (since,)).fetchone()[0]
            fb = conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
        finally:
            conn.close()
        if got >= requests and fb >= labels:
            return
        if time.monotonic() > deadline:
            raise LooplineError(f"the inference log holds {got} of {requests} requests and {fb} of "
                                f"{labels} labels after {timeout:.0f} s")
        time.sleep(0.1)
