"""The image of a version, built without Docker (buildah on the local base of
scripts/image-base.sh): at most 600 MB, it answers /predict, and a SIGTERM to its PID 1
stops the supervisor and every worker with the inference log flushed to the volume.

Builds take minutes (the base once, then the image), so this module runs only with
LOOPLINE_IMAGE_TESTS=1 (`make test-image`); it needs root for buildah (no sudo: the base
script installs buildah with apt-get).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_serving import RECORD, free_port
from tests.helpers import REPO
from tests.helpers.commands import loopline, sh

pytestmark = pytest.mark.skipif(
    os.environ.get("LOOPLINE_IMAGE_TESTS") != "1",
    reason="image builds take minutes: LOOPLINE_IMAGE_TESTS=1",
)
MAX_BYTES = 600e6  # 600 MB
PID1 = b"/opt/loopline/bin/python\0-m\0loopline.serving.pid1\0"


@pytest.fixture(scope="module")
def image(built_instance: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("image") / "repo"
    sh("cp", "-a", str(built_instance), str(root), cwd=root.parent)
    loopline("register", cwd=root)
    sh("bash", str(REPO / "scripts" / "image-base.sh"), cwd=root, timeout=1200)
    out = json.loads(loopline("containerize", "v0.1.0", "--json", cwd=root, timeout=1800).stdout)
    yield out["image"]
    subprocess.run(["buildah", "rmi", "-f", out["image"]], capture_output=True)


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        p, pp = map(int, line.split())
        children.setdefault(pp, []).append(p)
    found, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def image_bytes(image: str) -> int:
    """The image's size as buildah reports it (e.g. "320 MB": decimal units)."""
    (entry,) = json.loads(sh("buildah", "images", "--json", image, cwd=Path.cwd()).stdout)
    number, unit = str(entry["size"]).split()
    return int(float(number) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit])


def test_image_is_small(image: str) -> None:
    size = image_bytes(image)
    print(f"image {image}: {size / 1e6:.0f} MB")
    assert size <= MAX_BYTES


def test_sigterm_stops_every_worker_with_the_log_flushed(image: str, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o777)
    logs.chmod(0o777)
    ctr = sh("buildah", "from", image, cwd=tmp_path).stdout.strip()
    port = free_port()
    cmd = [
        "buildah",
        "run",
        "--isolation",
        "chroot",
        "-v",
        f"{logs}:/var/lib/loopline",
        ctr,
        "--",
        "/opt/loopline/bin/python",
        "-m",
        "loopline.serving.pid1",
        "--",
        "bentoml",
        "serve",
        "/home/bentoml/bento",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for _ in range(240):
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            for _ in range(5):
                assert client.post("/predict", json={"records": [RECORD]}).status_code == 200
        pid1 = next(
            p
            for p in _descendants(run.pid)
            # the process itself, not buildah's helper whose arguments name it
            if Path(f"/proc/{p}/cmdline").read_bytes().startswith(PID1)
        )
        service = _descendants(pid1)
        assert len(service) >= 3  # the supervisor and its workers
        os.kill(pid1, signal.SIGTERM)
        started = time.monotonic()
        while any(_alive(p) for p in [pid1, *service]) and time.monotonic() - started < 30:
            time.sleep(0.1)
        print(f"stopped in {time.monotonic() - started:.1f} s")
        assert not [p for p in [pid1, *service] if _alive(p)]
        rows = (
            sqlite3.connect(logs / "inference.sqlite")
            .execute("select count(*) from requests")
            .fetchone()[0]
        )
        assert rows == 5
    finally:
        run.kill()
        run.wait()
        subprocess.run(["buildah", "rm", ctr], capture_output=True)
