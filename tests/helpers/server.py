"""A `loopline serve` process on 127.0.0.1 for end-to-end tests, and a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from tests.helpers import BIN

TOKEN = "test-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



class Server:
    """A `loopline serve` process and its URL; stop() sends SIGTERM (graceful)."""

    def __init__(self, root: Path, *args: str, env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "logs" / f"inference-{self.port}.sqlite"
        self.env = {**os.environ, "LOOPLINE_ADMIN_TOKEN": TOKEN,
                    "BENTOML_HOME": str(root / ".bentoml"), **(env or {})}
        self.output = root / "logs" / f"server-{self.port}.out"  # a pipe nobody reads would fill
        self.output.parent.mkdir(exist_ok=True)
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "loopline"), "serve", *args, "--port", str(self.port),
                 "--log", str(self.log_path)],
                cwd=root, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=30.0)

    def wait_ready(self, timeout: float = 90.0) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.read_output()}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        raise AssertionError("server not ready in time")

    def predict(self, records: list[dict]) -> httpx.Response:
        return self.client.post("/predict", json={"records": records})

    def stop(self, timeout: float = 60.0) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.client.close()
        return self.read_output()

    def read_output(self) -> str:
        return self.output.read_text(errors="replace")
