"""What the inference log costs per request, in-process: the response path and the writer.

    python bench/inference_log.py [--rows 500000] [--requests 20000] [--batch 200]

- hot path: ``InferenceLog.predictions`` (what a request handler pays), and the request id;
- writer: CPU per request of the writer thread's work (rows to JSON, INSERT, commit) in
  batches of ``--batch`` requests (the flush of 0.2 s at ~1,000 requests/s), on a log that
  already holds ``--rows`` requests, with time-ordered request ids (``request_id``, UUIDv7:
  what the service uses) against random ones (uuid4): the log's primary key is the request
  id, and random keys land all over its index.

Records are real rows of data/prepared/test.parquet, one per request. CPU is the thread's
(``time.thread_time``), so other load on the machine counts little; say if it was shared.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import sample_records  # noqa: E402

from loopline.serving.log_writer import InferenceLog, request_id  # noqa: E402

CLASSES = ["bad", "good"]


def requests(records: list[dict], n: int, ids: str) -> list[tuple]:
    """``n`` requests of one record each, as the service queues them."""
    labels, proba = np.array(["good"], dtype=object), np.array([[0.73, 0.27]])
    new = request_id if ids == "ordered" else (lambda: uuid.uuid4().hex)
    return [(new(), time.time(), "v1", [records[i % len(records)]], labels, proba, CLASSES, 1.5)
            for i in range(n)]


def writer_us(records: list[dict], ids: str, prefill: int, n: int, batch: int) -> dict:
    """CPU and wall microseconds per request of writing ``n`` requests after ``prefill``."""
    tmp = Path(tempfile.mkdtemp(prefix="loopline-bench-log-"))
    log = InferenceLog(tmp / "log.sqlite", flush_interval=3600, flush_rows=10**9)
    try:
        for start in range(0, prefill, 10_000):
            rows = log._rows(requests(records, min(10_000, prefill - start), ids))
            log._write({"requests": rows, "feedback": [], "errors": []})
        todo = requests(records, n, ids)
        cpu, wall = time.thread_time(), time.perf_counter()
        for start in range(0, n, batch):
            rows = log._rows(todo[start:start + batch])
            log._write({"requests": rows, "feedback": [], "errors": []})
        return {"cpu": (time.thread_time() - cpu) / n * 1e6,
                "wall": (time.perf_counter() - wall) / n * 1e6,
                "wal_mb": (tmp / "log.sqlite-wal").stat().st_size / 1e6}
    finally:
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def hot_path_us(records: list[dict], n: int) -> dict:
    """Microseconds per call of the response path's part of logging."""
    tmp = Path(tempfile.mkdtemp(prefix="loopline-bench-log-"))
    log = InferenceLog(tmp / "log.sqlite", flush_interval=3600, flush_rows=10**9)
    try:
        todo = requests(records, n, "ordered")
        start = time.perf_counter()
        for req in todo:
            log.predictions(*req)
        queued = (time.perf_counter() - start) / n * 1e6
        log._drain(log._predictions)
        start = time.perf_counter()
        for _ in range(n):
            request_id()
        ordered = (time.perf_counter() - start) / n * 1e6
        start = time.perf_counter()
        for _ in range(n):
            uuid.uuid4().hex  # noqa: B018
        random = (time.perf_counter() - start) / n * 1e6
        return {"predictions()": queued, "request_id()": ordered, "uuid4().hex": random}
    finally:
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=500_000, help="requests already in the log")
    ap.add_argument("--requests", type=int, default=20_000, help="requests written, measured")
    ap.add_argument("--batch", type=int, default=200, help="requests per write")
    args = ap.parse_args()
    records = sample_records(1000)
    print("response path, µs per request:")
    for name, us in hot_path_us(records, 100_000).items():
        print(f"  {name:<16}{us:>8.2f}")
    print(f"writer, per request, batches of {args.batch}, {args.requests:,} requests:")
    print(f"  {'log holds':>12}  {'request ids':<12}{'CPU µs':>9}{'wall µs':>9}{'WAL MB':>8}")
    for prefill in sorted({0, args.rows}):
        for ids in ("random", "ordered"):
            r = writer_us(records, ids, prefill, args.requests, args.batch)
            print(f"  {prefill:>12,}  {ids:<12}{r['cpu']:>9.2f}{r['wall']:>9.1f}{r['wal_mb']:>8.1f}")


if __name__ == "__main__":
    main()
