"""The inference log across replicas, for real: `loopline serve` replicas shipping to moto's S3.

Two replicas on different ports, each with its own local log, ship to one store while they
take load at the same time; one is stopped (SIGTERM) mid-load and started again on the same
port and log; feedback for one replica's requests goes to the other. `loopline monitor` and
`loopline log` in a third directory, with no local log, then see every answered record once,
with its label. A store that goes down never fails a request: the backlog shows in /metrics
and drains when the store is back.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loopline.serving import log_store
from tests.helpers import BIN
from tests.helpers.commands import sh
from tests.helpers.s3 import S3, moto_s3, restart, stop

RECORD = {"Seniority": 9, "Home": "rent", "Time": 60, "Age": 30, "Marital": "married",
          "Records": "no", "Job": "freelance", "Expenses": 73, "Income": 129.0,
          "Assets": 0.0, "Debt": 0.0, "Amount": 800, "Price": 846}
BACKLOG = re.compile(r"^loopline_log_backlog_rows(?:\{[^}]*\})? (\S+)$", re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replica:
    """One `loopline serve` on a fixed port and local log; start() again after stop()."""

    def __init__(self, root: Path, name: str, env: dict[str, str]) -> None:
        self.root, self.name, self.env = root, name, env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "logs" / f"{name}.sqlite"
        self.output = root / "logs" / f"{name}.out"
        self.output.parent.mkdir(exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.client = httpx.Client(base_url=self.url, timeout=30.0)

    def start(self, timeout: float = 120.0) -> Replica:
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "loopline"), "serve", "--port", str(self.port), "--log",
                 str(self.log_path)], cwd=self.root, env=self.env, stdout=out,
                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n"
                                     f"{self.output.read_text(errors='replace')}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        raise AssertionError(f"{self.name} not ready in time")

    def stop(self, timeout: float = 90.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} did not stop on SIGTERM") from None

    def backlog(self) -> float:
        found = BACKLOG.findall(self.client.get("/metrics").text)
        return max((float(v) for v in found), default=-1.0)

    def local_requests(self) -> int:
        import sqlite3

        conn = sqlite3.connect(self.log_path)
        try:
            return conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        finally:
            conn.close()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with moto_s3() as server:
        yield server


@pytest.fixture()
def shipping_instance(built_copy: Path) -> Path:
    """The built instance, shipping every 0.3 s in batches of at most 50 rows, one worker
    per replica plus a second that must lose the election."""
    params = built_copy / "params.yaml"
    text = params.read_text()
    assert "every_seconds: 5" in text and "workers: 2" in text
    params.write_text(text.replace("every_seconds: 5", "every_seconds: 0.3")
                      .replace("max_rows: 10000", "max_rows: 50"))
    return built_copy


def label_of(request_id: str, idx: int) -> str:
    return ("good", "bad")[(int(request_id[:8], 16) + idx) % 2]


def test_two_replicas_one_restarted_ship_every_record_once(shipping_instance: Path, s3: S3,
                                                             tmp_path: Path,
                                                             built_instance: Path) -> None:
    url = s3.url("e2e-replicas")
    env = {**s3.env(), log_store.STORE_ENV: url, "BENTOML_DO_NOT_TRACK": "True"}
    a = Replica(shipping_instance, "a", env).start()
    b = Replica(shipping_instance, "b", env).start()
    answered: dict[str, tuple[str, int]] = {}  # request_id -> (replica, records)
    lock, done = threading.Lock(), threading.Event()
    refused = {"a": 0, "b": 0}

    def load(rep: Replica, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=rep.url, timeout=30.0) as client:
            while not done.is_set():
                n = rng.randint(1, 3)
                try:
                    res = client.post("/predict", json={"records": [
                        {**RECORD, "Age": rng.randint(18, 70)} for _ in range(n)]})
                except httpx.TransportError:  # the replica is down: not answered
                    with lock:
                        refused[rep.name] += 1
                    time.sleep(0.05)
                    continue
                assert res.status_code == 200, res.text
                with lock:
                    answered[res.json()["request_id"]] = (rep.name, n)

    threads = [threading.Thread(target=load, args=(rep, i)) for i, rep in
               enumerate([a, a, b, b])]
    try:
        for t in threads:
            t.start()
        time.sleep(4.0)
        a.stop()  # SIGTERM mid-load: it ships what it holds on the way out
        assert a.local_requests() == 0
        time.sleep(1.0)
        a.start()  # same port, same log: the same replica, its batch numbers continue
        time.sleep(4.0)
    finally:
        done.set()
        for t in threads:
            t.join()
    try:
        # feedback for A's requests goes to B, and B's to A
        for sender, owner in ((b, "a"), (a, "b")):
            items = [{"request_id": rid, "index": i, "label": label_of(rid, i)}
                     for rid, (name, n) in answered.items() if name == owner for i in range(n)]
            for k in range(0, len(items), 500):
                res = sender.client.post("/feedback", json={"labels": items[k:k + 500]})
                assert res.status_code == 200, res.text
    finally:
        a.stop()
        b.stop()
    assert a.local_requests() == 0 and b.local_requests() == 0  # all shipped on SIGTERM
    assert {name for name, _ in answered.values()} == {"a", "b"} and refused["a"] > 0

    third = tmp_path / "third"
    shutil.copytree(built_instance, third, symlinks=True)
    shutil.rmtree(third / "logs", ignore_errors=True)
    out = sh(str(BIN / "loopline"), "log", "--log", url, "--json", cwd=third, env=env)
    rows = json.loads(out.stdout)
    keys = [(r["request_id"], r["idx"]) for r in rows]
    expected = {(rid, i) for rid, (_, n) in answered.items() for i in range(n)}
    lost, duplicated = expected - set(keys), len(keys) - len(set(keys))
    print(f"records answered {len(expected)}, in the store {len(keys)}, lost {len(lost)}, "
          f"duplicated {duplicated}")
    assert not lost and duplicated == 0 and set(keys) == expected
    assert all(r["label"] == label_of(r["request_id"], r["idx"]) for r in rows)

    mon = sh(str(BIN / "loopline"), "monitor", "--log", url, "--json", "--no-html", cwd=third,
             env=env, check=False)
    assert mon.returncode in (0, 3, 4), mon.stdout + mon.stderr
    latest = json.loads(mon.stdout)["windows"][-1]
    assert latest["requests"] == len(answered) and latest["records"] == len(expected)
    assert latest["labels"] == len(expected)
    assert not (third / "logs").exists()


def test_a_store_that_is_down_fails_no_request_and_the_backlog_drains(
        shipping_instance: Path, s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    url = s3.url("e2e-down")
    env = {**s3.env(), log_store.STORE_ENV: url, "BENTOML_DO_NOT_TRACK": "True",
           "LOOPLINE_REPLICA": "solo"}
    rep = Replica(shipping_instance, "solo", env).start()
    down = False
    try:
        stop(s3)
        down = True
        ids = []
        for i in range(60):
            res = rep.client.post("/predict", json={"records": [{**RECORD, "Age": 20 + i}]})
            assert res.status_code == 200, res.text
            ids.append(res.json()["request_id"])
        deadline = time.monotonic() + 60
        while rep.backlog() < 60 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert rep.backlog() >= 60  # the rows wait, and /metrics says so
        assert rep.local_requests() == 60
        restart(s3)
        down = False
        deadline = time.monotonic() + 60
        while rep.backlog() != 0 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert rep.backlog() == 0 and rep.local_requests() == 0
    finally:
        if down:
            restart(s3)
        rep.stop()
    assert "shipping failed" in rep.output.read_text(errors="replace")
    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    df = log_store.read_predictions(url)
    assert sorted(df["request_id"]) == sorted(ids)
