"""The shipper (serving/shipping.py): a replica's log moved to the store, deleted only after."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from loopline.serving import log_store
from loopline.serving.inference_log import read_predictions
from loopline.serving.shipping import Shipper, replica_id, start
from tests.helpers.log_records import T0, write_log

HOUR = 3600.0


def rows(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in log_store.TABLES}
    finally:
        conn.close()


def copy(src: Path, dest: Path) -> None:
    """Replace the SQLite database ``dest`` by ``src`` (WAL included)."""
    a, b = sqlite3.connect(src), sqlite3.connect(dest)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))


def shipper(path: Path, store: log_store.Store, **kw) -> Shipper:
    kw.setdefault("start", False)
    return Shipper(path, store, artifact="credit", replica=kw.pop("replica", "host-3000"), **kw)


@pytest.fixture()
def store(tmp_path: Path) -> log_store.Store:
    return log_store.parse(f"file://{tmp_path}/store")


def test_batches_go_to_hive_partitions_by_table_version_date_hour(tmp_path: Path, store) -> None:
    log = tmp_path / "log.sqlite"
    write_log(log, 7, feedback=[("r1", 0, "yes")], errors=2)
    s = shipper(log, store, max_rows=4)
    assert s.try_lead()
    seq = s._seq()
    assert s.ship_batch() == 4 + 1 + 2  # up to max_rows per table
    assert rows(log) == {"requests": 3, "feedback": 0, "errors": 0}
    assert s.ship() == 3 and rows(log) == {"requests": 0, "feedback": 0, "errors": 0}
    got = files(tmp_path / "store")
    first, second = f"host-3000-{seq:013d}.parquet", f"host-3000-{seq + 1:013d}.parquet"
    # 7 requests 10 minutes apart from 13:30: hours 13 (3), 14 (4) of 2026-09-21
    part = "artifact=credit/version=v1/date=2026-09-21"
    assert got == sorted([
        f"errors/{part}/hour=13/{first}",
        f"feedback/artifact=credit/version=none/date=2026-09-21/hour=14/{first}",
        f"records/{part}/hour=13/{first}", f"records/{part}/hour=14/{first}",
        f"records/{part}/hour=14/{second}"])
    assert s._seq() == seq + 2  # the next batch continues the sequence
    s.close()


def test_rows_stay_in_the_log_until_the_upload_succeeds(tmp_path: Path) -> None:
    log = tmp_path / "log.sqlite"
    write_log(log, 5, feedback=[("r0", 0, "no")])
    blocker = tmp_path / "store"
    blocker.write_text("a file where the store's folder should be")
    s = shipper(log, log_store.parse(f"file://{blocker}"))
    with pytest.raises(OSError):
        s.ship()
    assert rows(log) == {"requests": 5, "feedback": 1, "errors": 0}
    blocker.unlink()
    assert s.ship() == 6
    assert rows(log) == {"requests": 0, "feedback": 0, "errors": 0}
    assert len(log_store.read_predictions(f"file://{blocker}")) == 5
    s.close()


def test_a_crash_between_upload_and_delete_counts_once(tmp_path: Path, store) -> None:
    log = tmp_path / "log.sqlite"
    write_log(log, 6, feedback=[("r2", 0, "yes")])
    expected = read_predictions(log)
    before = tmp_path / "before.sqlite"
    s = shipper(log, store)
    s._seq()  # what a batch keeps before its first upload
    copy(log, before)  # the log as it was when the upload finished
    s.ship()
    s.close()
    copy(before, log)  # ... and the delete never happened
    shipped = files(tmp_path / "store")
    again = shipper(log, store)
    assert again.ship() == 7
    again.close()
    assert files(tmp_path / "store") == shipped  # same seq: the same files, overwritten
    pd.testing.assert_frame_equal(log_store.read_predictions(store.url), expected)

    # a log that lost its state as well ships under a new seq: the reader still counts once
    copy(before, log)
    conn = sqlite3.connect(log)
    conn.execute("DELETE FROM ship_state")
    conn.commit()
    conn.close()
    third = shipper(log, store)
    third.ship()
    third.close()
    assert len(files(tmp_path / "store")) == 2 * len(shipped)
    pd.testing.assert_frame_equal(log_store.read_predictions(store.url), expected)


def test_one_shipper_per_log_takes_the_lock(tmp_path: Path, store) -> None:
    log = tmp_path / "log.sqlite"
    write_log(log, 3)
    a, b = shipper(log, store), shipper(log, store)
    assert a.try_lead() and not b.try_lead()
    assert a.try_lead()  # holding it stays true
    a.close()  # ships what is there, then hands the lock on
    assert rows(log)["requests"] == 0
    assert b.try_lead()
    b.close()


def test_another_process_holding_the_lock_keeps_this_one_from_shipping(tmp_path: Path,
                                                                        store) -> None:
    log = tmp_path / "log.sqlite"
    write_log(log, 2)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\n"
         "from loopline.serving import log_store\n"
         "from loopline.serving.shipping import Shipper\n"
         f"s = Shipper({str(log)!r}, log_store.parse({store.url!r}), artifact='credit', "
         "replica='host-3000', start=False)\n"
         "print(s.try_lead(), flush=True)\nsys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        here = shipper(log, store)
        assert not here.try_lead()
    finally:
        holder.communicate("", timeout=60)  # the other process exits: the lock is free
    assert here.try_lead()
    here.close()
    assert rows(log)["requests"] == 0


def test_the_shipping_worker_ships_in_the_background_and_close_flushes(tmp_path: Path,
                                                                       store) -> None:
    log = tmp_path / "log.sqlite"
    write_log(log, 4)
    reports: list[tuple[int, bool]] = []
    s = shipper(log, store, every_seconds=0.05, start=True,
                on_backlog=lambda n, alert: reports.append((n, alert)))
    deadline = time.monotonic() + 30
    while rows(log)["requests"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rows(log)["requests"] == 0 and s.leader
    write_log(log, 2, prefix="late")  # written right before shutdown
    s.close()
    assert rows(log)["requests"] == 0
    assert len(log_store.read_predictions(store.url)) == 6
    assert reports and reports[-1][1] is False


def test_an_unreachable_store_grows_the_backlog_and_fires_the_alert(tmp_path: Path) -> None:
    log = tmp_path / "log.sqlite"
    write_log(log, 5, errors=1)
    blocker = tmp_path / "store"
    blocker.write_text("not a folder")
    seen = threading.Event()
    reports: list[tuple[int, bool]] = []

    def report(n: int, alert: bool) -> None:
        reports.append((n, alert))
        if alert:
            seen.set()

    s = shipper(log, log_store.parse(f"file://{blocker}"), every_seconds=0.05,
                alert_backlog_rows=3, on_backlog=report, start=True)
    assert seen.wait(30)
    assert (6, True) in reports and s.failures >= 1 and s.alerting
    blocker.unlink()  # the store is back: the backlog drains and the alert clears
    deadline = time.monotonic() + 30
    while s.backlog and time.monotonic() < deadline:
        time.sleep(0.02)
    assert s.backlog == 0 and not s.alerting and reports[-1] == (0, False)
    s.close()


def test_shipping_to_s3_reads_back_the_frame_of_the_local_log(tmp_path: Path, s3_env) -> None:
    log = tmp_path / "log.sqlite"
    write_log(log, 5, feedback=[("r1", 0, "no"), ("r4", 0, "yes")], errors=2)
    expected = read_predictions(log)
    store = log_store.parse(s3_env.url("unit-ship"))
    s = shipper(log, store, max_rows=2)
    assert s.ship() == 5 + 2 + 2
    s.close()
    keys = s3_env.keys("unit-ship/")
    assert keys and all(k.startswith(("unit-ship/records/artifact=credit/version=v1/date=",
                                      "unit-ship/feedback/", "unit-ship/errors/")) for k in keys)
    pd.testing.assert_frame_equal(log_store.read_predictions(store.url), expected)


def test_s3_failure_keeps_the_rows(tmp_path: Path, s3_env) -> None:
    log = tmp_path / "log.sqlite"
    write_log(log, 3)
    s = shipper(log, log_store.parse("s3://no-such-bucket/logs"))
    with pytest.raises(OSError):
        s.ship()
    assert rows(log)["requests"] == 3
    s.close()


def test_replica_id_and_start(tmp_path: Path, store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOPLINE_REPLICA", raising=False)
    monkeypatch.delenv(log_store.STORE_ENV, raising=False)
    assert replica_id("pod a/1", 3000) == "pod-a-1"
    assert replica_id(None, 3001).endswith("-3001")
    monkeypatch.setenv("LOOPLINE_REPLICA", "web-2")
    assert replica_id("ignored", 3000) == "web-2"
    spec = {"artifact": "credit", "root": str(tmp_path),
            "log_store": {"url": None, "every_seconds": 1, "max_rows": 5}}
    assert start(spec, tmp_path / "log.sqlite") is None  # no store, no DVC remote
    monkeypatch.setenv(log_store.STORE_ENV, store.url)
    s = start(spec, tmp_path / "log.sqlite")
    assert s is not None and s.replica == "web-2" and s.store == store and s.max_rows == 5
    s.close()


def test_compaction_merges_a_replicas_small_files_of_an_ended_hour(tmp_path: Path,
                                                                   store) -> None:
    log, other = tmp_path / "log.sqlite", tmp_path / "other.sqlite"
    write_log(other, 2, prefix="o")
    s_other = shipper(other, store, replica="other-1")
    s_other.ship()
    s_other.close()
    s = shipper(log, store, max_rows=2, compact_after=600.0)
    for k in range(3):  # three shipments into the same hours: many small files
        write_log(log, 4, prefix=f"k{k}-", feedback=[(f"k{k}-1", 0, "yes")])
        s.ship()
    before = log_store.read_predictions(store.url)
    root = tmp_path / "store"
    hour13 = root / "records/artifact=credit/version=v1/date=2026-09-21/hour=13"
    assert len([f for f in hour13.iterdir() if f.name.startswith("host-3000-")]) == 6
    assert s.compact(now=T0 + 30 * 60 + 599) == 0  # hour 13 ended 9:59 ago: wait
    assert s.compact(now=T0 + 3 * HOUR) > 0
    mine = [f for f in hour13.iterdir() if f.name.startswith("host-3000-")]
    assert len(mine) == 1
    assert any(f.name.startswith("other-1-") for f in hour13.iterdir())  # not ours: untouched
    pd.testing.assert_frame_equal(log_store.read_predictions(store.url), before)
    assert s.compact(now=T0 + 3 * HOUR) == 0  # nothing left to merge
    s.close()


def test_a_crash_inside_compaction_still_reads_once(tmp_path: Path, store) -> None:
    log = tmp_path / "log.sqlite"
    s = shipper(log, store, max_rows=1)
    write_log(log, 3, feedback=[("r0", 0, "no")])
    s.ship()
    expected = log_store.read_predictions(store.url)
    hour13 = tmp_path / "store/records/artifact=credit/version=v1/date=2026-09-21/hour=13"
    small = sorted(hour13.iterdir())
    copies = {f: f.read_bytes() for f in small}
    s.compact(now=T0 + 3 * HOUR)
    for f, data in copies.items():  # the small files back: as if the deletes never happened
        f.write_bytes(data)
    assert len(list(hour13.iterdir())) == len(small) + 1
    pd.testing.assert_frame_equal(log_store.read_predictions(store.url), expected)
    conn = sqlite3.connect(log)
    conn.execute("INSERT INTO ship_parts VALUES (?)", (str(hour13),))
    conn.commit()
    conn.close()
    s.compact(now=T0 + 3 * HOUR)
    merged = list(hour13.iterdir())
    assert len(merged) == 1
    assert pq.read_table(merged[0]).num_rows == 3  # exact duplicates dropped
    pd.testing.assert_frame_equal(log_store.read_predictions(store.url), expected)
    s.close()
