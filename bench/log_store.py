"""The cost of shipping the inference log to a store, and of reading it back, side by side.

    python bench/log_store.py [--duration 8] [--rounds 3] [--records 200000] [--skip-serve]

1. Throughput: two `loopline serve` processes of the same model run at once (2 workers each,
   inference log on), one shipping to a file:// store every second (5 times the default
   rate), one with the store off. After a warm-up of each, wrk (-t1 -c8, one record per
   request) loads them in turn, ABBA-interleaved over ``--rounds`` rounds; the table gives
   the median req/s with the spread (min–max) and the ratio of the medians. Shipping lag:
   for every shipped row, the time its Parquet file appeared minus the time it was answered.
2. Reading: ``--records`` records over 7 days (one request each, a label on every fourth)
   in a local SQLite log, then the same rows shipped to a file:// store and to moto's S3 on
   127.0.0.1: the seconds to read the monitor's frames (predictions joined to labels, and the
   request errors) from each, interleaved over ``--rounds`` rounds (median and spread). The
   frames are checked equal, so the rest of `loopline monitor` is the same work on all three.
   moto's server runs in this process and shares the reader's GIL (the reader's Python
   turns each record into a dict): the S3 time is an upper bound. `bench/monitor_scale.py`
   runs the reader in a process of its own.

Needs a model in models/ (`make run`) and wrk (`make bench`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import BIN, OUT, ROOT, Proc, free_port, sample_records, wrk  # noqa: E402


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.0f}  ({min(values):.0f}–{max(values):.0f})"


def serve_bench(args: argparse.Namespace, tmp: Path, env: dict) -> list[tuple[str, float, str]]:
    one = json.dumps({"records": sample_records(1)}).encode()
    store = tmp / "store"
    procs = {}
    for name, url in (("shipping", f"file://{store}"), ("store off", "off")):
        spec = json.loads(subprocess.run(
            [str(BIN / "loopline"), "serve", "--dry-run", "--port", "1"], cwd=ROOT, env=env,
            capture_output=True, text=True, check=True).stdout)
        spec["log"]["path"] = str(tmp / f"{name.replace(' ', '-')}.sqlite")
        spec["log_store"].update(url=url, every_seconds=1.0, replica=name.replace(" ", "-"))
        path = tmp / f"{name.replace(' ', '-')}.json"
        path.write_text(json.dumps(spec))
        port = free_port()
        procs[name] = Proc(name.replace(" ", "-"), [
            str(BIN / "bentoml"), "serve", "loopline.serving.service:LooplineService",
            "--host", "127.0.0.1", "--port", str(port)],
            f"http://127.0.0.1:{port}", {**env, "LOOPLINE_SERVE_SPEC": str(path)}, tmp,
            ("/predict", one))
    rps: dict[str, list[float]] = {name: [] for name in procs}
    try:
        for p in procs.values():
            p.wait()
        order = list(procs)
        print(f"single record, wrk -t1 -c{8} -d{args.duration}s, {args.rounds} rounds "
              "(ABBA), both servers up:", flush=True)
        for r in range(args.rounds):
            for name in order if r % 2 == 0 else order[::-1]:
                res = wrk(procs[name].url + "/predict", one, connections=8,
                          duration=args.duration)
                assert res["errors"] == 0, res
                rps[name].append(res["rps"])
                print(f"  round {r + 1} {name:<10}{res['rps']:8.0f} req/s", flush=True)
    finally:
        for p in procs.values():
            p.stop()  # SIGTERM: the shipping one ships what is left
    lags = []
    for f in store.rglob("*.parquet"):
        if "/records/" not in str(f) and "/requests/" not in str(f):  # typed, or as before
            continue
        import pyarrow.parquet as pq

        seen = f.stat().st_mtime
        lags += [seen - ts for ts in pq.read_table(f, columns=["ts"])["ts"].to_pylist()]
    lags.sort()
    p = {q: lags[min(len(lags) - 1, int(q / 100 * len(lags)))] for q in (50, 99)} if lags \
        else {50: float("nan"), 99: float("nan")}
    print(f"\n{'server':<12}{'median req/s':>14}  (min–max)")
    for name, values in rps.items():
        print(f"{name:<12}{spread(values)}")
    print(f"shipping lag over {len(lags)} rows: p50 {p[50]:.2f} s, p99 {p[99]:.2f} s "
          "(flush interval 1 s)")
    ratio = statistics.median(rps["shipping"]) / statistics.median(rps["store off"])
    return [("single record req/s, shipping on vs off", ratio, "≥ 0.95"),
            ("shipping lag p99 / flush interval", p[99] / 1.0, "≤ 2")]


def write_log(path: Path, n: int, start: float) -> None:
    import numpy as np

    from loopline.serving.inference_log import InferenceLog

    pool = sample_records(500)
    log = InferenceLog(path, flush_interval=3600, flush_rows=10**9)
    step = 7 * 86400 / n
    for i in range(n):
        label = "good" if i % 3 else "bad"
        log.predictions(f"{i:012x}", start + i * step, "v1", [pool[i % len(pool)]],
                        np.array([label], dtype=object), np.array([[0.3, 0.7]]),
                        ["bad", "good"], 1.0)
        if i % 4 == 0:
            log.feedback([(f"{i:012x}", 0, label)], start + i * step + 60)
        if i % 1000 == 0:
            log.request_error(start + i * step, "/predict", 400, "v1")
    log.close()


def read_bench(args: argparse.Namespace, tmp: Path) -> list[tuple[str, float, str]]:
    import pandas as pd
    from tests.helpers.s3 import moto_s3

    from loopline.serving import log_store
    from loopline.serving.shipping import Shipper

    n, now = args.records, time.time()
    local = tmp / "read.sqlite"
    t = time.perf_counter()
    write_log(local, n, now - 7 * 86400)
    print(f"\n{n:,} records written to SQLite in {time.perf_counter() - t:.1f} s", flush=True)

    def read(source: object) -> tuple[float, object]:
        t0 = time.perf_counter()
        src = log_store.open_log(source)
        frame = (src.predictions(since=now - 8 * 86400, until=now + 1),
                 src.request_errors(since=now - 8 * 86400, until=now + 1))
        return time.perf_counter() - t0, frame

    def shipped(store: log_store.Store) -> None:
        copy = tmp / f"ship-{store.scheme}.sqlite"
        with sqlite3.connect(local) as a, sqlite3.connect(copy) as b:
            a.backup(b)
        s = Shipper(copy, store, artifact="bench", replica="bench-1", max_rows=10_000,
                    start=False)
        t0 = time.perf_counter()
        s.ship()
        s.close()
        print(f"  shipped to {store.scheme} in {time.perf_counter() - t0:.1f} s", flush=True)

    times: dict[str, list[float]] = {"SQLite": [], "file:// store": [], "moto S3 store": []}
    with moto_s3() as s3:
        saved = dict(os.environ)
        os.environ.update(s3.env())
        try:
            sources = {"SQLite": local, "file:// store": log_store.parse(f"file://{tmp}/fs"),
                       "moto S3 store": log_store.parse(s3.url("bench"))}
            shipped(sources["file:// store"])
            shipped(sources["moto S3 store"])
            parts = len(s3.keys("bench/records/")) + len(s3.keys("bench/requests/"))
            names = list(sources)
            ref = None
            for r in range(args.rounds):  # interleaved, the order rotated each round
                for name in names[r % 3:] + names[:r % 3]:
                    secs, frame = read(sources[name])
                    times[name].append(secs)
                    if ref is None:
                        ref = frame
                    else:  # the same frames from every source
                        pd.testing.assert_frame_equal(frame[0], ref[0])
                        pd.testing.assert_frame_equal(frame[1], ref[1])
        finally:
            os.environ.clear()
            os.environ.update(saved)
    print(f"\nreading {n:,} records ({parts} files of requests in the store), {args.rounds} "
          "interleaved rounds, median (min–max):")
    for name, values in times.items():
        print(f"  {name:<16}{statistics.median(values):8.2f} s  ({min(values):.2f}–"
              f"{max(values):.2f})")
    base = statistics.median(times["SQLite"])
    return [("read from file:// store vs SQLite (time)",
             statistics.median(times["file:// store"]) / base, "≤ 1"),
            ("read from moto S3 vs SQLite (time)",
             statistics.median(times["moto S3 store"]) / base, "")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--skip-serve", action="store_true")
    args = ap.parse_args()
    if not (ROOT / "models/model.onnx").is_file():
        raise SystemExit("no model in models/: run `make run` first")
    if not args.skip_serve and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk; `make bench` does it)")
    OUT.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    tmp = Path(tempfile.mkdtemp(prefix="loopline-bench-store-"))
    env = {**os.environ, "BENTOML_HOME": str(tmp / "bentoml"), "BENTOML_DO_NOT_TRACK": "True",
           "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("LOOPLINE_LOG_STORE", None)
    rows = []
    try:
        if not args.skip_serve:
            rows += serve_bench(args, tmp, env)
        rows += read_bench(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{'ratio':<50}{'value':>8}  target")
    for label, value, target in rows:
        print(f"{label:<50}{value:>8.2f}  {target}")
    (OUT / "log_store.json").write_text(json.dumps({r[0]: r[1] for r in rows}, indent=2))


if __name__ == "__main__":
    main()
