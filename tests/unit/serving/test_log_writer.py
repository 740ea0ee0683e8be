"""The inference log's writer (serving/log_writer.py): off the response path, spooled when the
log cannot take a write, read back with serving/inference_log.py."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from loopline.serving import contract
from loopline.serving.inference_log import features, read_predictions, read_request_errors
from loopline.serving.log_writer import InferenceLog, request_id
from tests.helpers.contract import GOOD


class FakeRuntime:
    def run_records(self, records):
        n = len(records)
        return np.array(["bad"] * n, dtype=object), np.tile([0.75, 0.25], (n, 1))

    def run_columns(self, columns, n):
        return self.run_records(range(n))


class FakeVersion:
    version = "v9"
    classes = ["bad", "good"]
    model = FakeRuntime()


def _queue(log: InferenceLog, rid: str, records: list[dict]) -> None:
    n = len(records)
    log.predictions(rid, time.time(), "v1", records, np.array(["good"] * n, dtype=object),
                    np.tile([0.2, 0.8], (n, 1)), ["bad", "good"], 0.5)


def test_an_unserialisable_record_does_not_stop_the_log(tmp_path: Path) -> None:
    log = InferenceLog(tmp_path / "log.sqlite", flush_interval=0.01)
    _queue(log, "huge", [{**GOOD, "Age": 10**30}])  # orjson refuses it
    _queue(log, "after", [GOOD])
    assert log.flush(10.0) and log._thread.is_alive()
    log.close()
    df = read_predictions(tmp_path / "log.sqlite")
    assert set(df["request_id"]) == {"huge", "after"}


def test_inference_log_close_writes_everything_queued(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = InferenceLog(path, flush_interval=30.0, flush_rows=10**6)  # no flush before close
    for i in range(500):
        _queue(log, f"r{i}", [GOOD, {**GOOD, "Age": 50}])
    log.feedback([("r3", 1, "bad")], time.time())
    log.close()
    df = read_predictions(path)
    assert len(df) == 1000 and df["request_id"].nunique() == 500
    row = df[(df.request_id == "r3") & (df.idx == 1)].iloc[0]
    assert row["inputs"]["Age"] == 50 and row["label"] == "bad"
    assert row["probabilities"] == {"bad": 0.2, "good": 0.8}
    assert row["prediction"] == "good" and row["model_version"] == "v1"


def test_request_errors_are_written_and_read_back_by_time(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = InferenceLog(path, flush_interval=30.0)
    log.request_error(100.0, "/predict", 400, "v1")
    log.request_error(200.0, "/feedback", 413)
    log.request_error(300.0, "/predict_batch", 500, "v2")
    log.close()
    df = read_request_errors(path, since=150.0, until=300.0)
    assert df.to_dict("records") == [{"ts": 200.0, "route": "/feedback", "status": 413,
                                      "model_version": None}]
    assert read_request_errors(path)["status"].tolist() == [400, 413, 500]
    # a log written before request errors were recorded has no such table: unknown
    old = tmp_path / "old.sqlite"
    sqlite3.connect(old).execute("CREATE TABLE requests (ts REAL)").connection.commit()
    assert read_request_errors(old) is None  # unknown, not zero


def test_inference_log_retries_while_the_file_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = InferenceLog(path, flush_interval=0.05)
    blocker = sqlite3.connect(path, timeout=0.1)
    blocker.execute("BEGIN EXCLUSIVE")
    log._conn.execute("PRAGMA busy_timeout=50")  # fail fast while locked, then retry
    _queue(log, "locked", [GOOD])
    time.sleep(0.5)
    assert log.written == 0 and log.write_failures > 0
    blocker.rollback()
    blocker.close()
    assert log.flush(10.0)
    log.close()
    assert read_predictions(path)["request_id"].tolist() == ["locked"]


def test_inference_log_scores_the_shadow_off_the_response_path(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    shadow = FakeVersion()
    log = InferenceLog(path, flush_interval=0.05, shadow=lambda: shadow)
    _queue(log, "a", [GOOD])
    _queue(log, "b", [GOOD, GOOD])
    log.close()
    df = read_predictions(path)
    assert set(df["shadow_version"]) == {"v9"} and set(df["shadow_prediction"]) == {"bad"}
    assert set(df["prediction"]) == {"good"}
    assert df["shadow_probabilities"][0] == {"bad": 0.75, "good": 0.25}


def test_inference_log_reads_column_batches_back_as_records(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    shadow = FakeVersion()
    log = InferenceLog(path, flush_interval=0.05, shadow=lambda: shadow)
    columns = {"Age": [30, 41, 52], "Home": ["rent", None, "owner"]}
    log.predictions("cols", time.time(), "v1", contract.ColumnRecords(columns, 3),
                    np.array(["good", "bad", "good"], dtype=object),
                    np.array([[0.1, 0.9], [0.7, 0.3], [0.2, 0.8]]), ["bad", "good"], 1.0)
    log.feedback([("cols", 2, "bad")], time.time())
    log.close()
    df = read_predictions(path)
    assert df["inputs"].tolist() == [{"Age": 30, "Home": "rent"}, {"Age": 41, "Home": None},
                                     {"Age": 52, "Home": "owner"}]
    assert df["prediction"].tolist() == ["good", "bad", "good"]
    assert df["probabilities"][1] == {"bad": 0.7, "good": 0.3}
    assert df["label"].tolist()[2] == "bad" and df["shadow_prediction"].tolist() == ["bad"] * 3
    assert features(df)["Age"].tolist() == [30, 41, 52]


def test_inference_log_is_written_by_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    logs = [InferenceLog(path, flush_interval=0.01) for _ in range(2)]

    def work(k: int) -> None:
        for i in range(300):
            _queue(logs[k], f"w{k}-{i}", [GOOD])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for log in logs:
        log.close()
    assert len(read_predictions(path)) == 600


def test_rows_the_log_cannot_take_go_to_the_spool_and_back_at_start(tmp_path: Path) -> None:
    from loopline.serving import log_check, spool
    from tests.helpers.logs import DAMAGE, sound_log

    path = sound_log(tmp_path / "log.sqlite", requests=50)
    counted: list[tuple[str, int]] = []
    log = InferenceLog(path, flush_interval=0.02, count=lambda o, n: counted.append((o, n)))
    DAMAGE["garbled pages"][0](path)  # damaged under a running service
    log._conn.close()
    log._conn = None  # as a worker started now opens it
    _queue(log, "after-damage", [GOOD, GOOD])
    log.feedback([("after-damage", 1, "bad")], time.time())
    assert log.flush(10.0) and log.accepting
    log.close()
    assert log.spooled == 2 and ("spooled", 2) in counted and ("failed", 1) in counted
    assert spool.pending(path) == 2
    # the next start refuses the damaged log; moved aside, the new one gets the spooled rows
    state = log_check.open_log(path, reset=True)
    assert state["replayed"] == 2
    df = read_predictions(path)
    assert df["request_id"].tolist() == ["after-damage"] * 2 and df["label"].tolist()[1] == "bad"


def test_a_log_that_cannot_be_opened_does_not_stop_the_worker(tmp_path: Path) -> None:
    from loopline.serving import spool

    path = tmp_path / "log.sqlite"
    path.mkdir()  # a folder where the file should be
    log = InferenceLog(path, flush_interval=0.02)
    _queue(log, "kept", [GOOD])
    assert log.flush(10.0) and log._thread.is_alive()
    log.close()
    assert log.spooled == 1 and spool.pending(path) == 1


def test_nothing_is_answered_that_neither_log_nor_spool_can_keep(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loopline.serving import spool

    path = tmp_path / "log.sqlite"
    path.mkdir()
    counted: list[tuple[str, int]] = []
    failing = {"on": True}
    real_append = spool.append

    def append(log, rows):
        if failing["on"]:
            raise OSError(28, "No space left on device")
        return real_append(log, rows)

    monkeypatch.setattr(spool, "append", append)
    log = InferenceLog(path, flush_interval=0.02, count=lambda o, n: counted.append((o, n)))
    _queue(log, "held", [GOOD])
    deadline = time.monotonic() + 10
    while log.accepting and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not log.accepting  # the service answers 503 now
    failing["on"] = False  # the disk has room again: the held rows are kept, predictions resume
    assert log.flush(10.0) and log.accepting
    assert spool.pending(path) == 1
    failing["on"] = True
    _queue(log, "lost", [GOOD])
    log.close()
    assert log.lost == 1 and ("lost", 1) in counted


def test_the_log_is_tried_again_and_written_once_it_recovers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from loopline.serving import log_writer, spool

    monkeypatch.setattr(log_writer, "RETRY_LOG", 0.3)
    path = tmp_path / "log.sqlite"
    path.mkdir()
    log = InferenceLog(path, flush_interval=0.02)
    for i in range(20):  # many batches while it fails: spooled, one line in the service log
        _queue(log, f"s{i}", [GOOD])
        assert log.flush(10.0)
    path.rmdir()  # the operator fixed it
    time.sleep(0.4)
    _queue(log, "back", [GOOD])
    assert log.flush(10.0)
    log.close()
    assert log.spooled == 20 and spool.pending(path) == 20
    assert read_predictions(path)["request_id"].tolist() == ["back"]
    failures = [r for r in caplog.records if "write failed" in r.getMessage()
                or "cannot be opened" in r.getMessage()]
    assert len(failures) <= 2 and any("written again" in r.getMessage() for r in caplog.records)


def test_a_log_deleted_or_moved_while_served_is_made_again_where_it_is_looked_for(
        tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = InferenceLog(path, flush_interval=0.02)
    _queue(log, "before", [GOOD])
    assert log.flush(10.0)
    path.rename(tmp_path / "moved.sqlite")  # an operator moves it aside (its -wal stays behind)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    _queue(log, "after", [GOOD])
    assert log.flush(10.0)
    log.close()
    assert read_predictions(path)["request_id"].tolist() == ["after"]


def test_request_ids_are_uuid7_unique_and_ordered_by_the_millisecond() -> None:
    import uuid

    first = [request_id() for _ in range(5000)]
    time.sleep(0.002)
    later = request_id()
    assert all(len(rid) == 32 and int(rid, 16) >= 0 for rid in first)
    parsed = uuid.UUID(first[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert len(set(first)) == len(first)
    assert later > max(first)  # a later millisecond sorts after: the log's index grows at its end
    assert abs(int(first[0][:12], 16) - time.time() * 1000) < 60_000
