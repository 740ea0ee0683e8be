"""`loopline monitor` over ten million logged records: the store (moto's S3, file://) vs SQLite.

    python bench/monitor_scale.py [--records 10000000] [--days 7] [--replicas 2]
                                  [--label-share 0.25] [--batch-share 0] [--rounds 3]
                                  [--layout typed|json] [--no-html] [--keep]

Writes ``--records`` records over ``--days`` days straight to Parquet with pyarrow, as the
replicas' shippers lay them out (``records|feedback|errors/artifact=/version=/date=/hour=/
<replica>-<seq>.parquet``, one compacted file per replica and partition; ``--layout json``:
``requests`` with JSON columns, as stores were shipped before the typed records), into moto's S3 on
127.0.0.1 and into a file:// store, and the same rows into a SQLite log. The columns are the
log's, the inputs real records of the reference instance (data/prepared/test.parquet, gaps
left out as the service logs them); v1 serves the first four days, then v2 takes 90% of the
traffic (windows with both); a label for ``--label-share`` of the records, arriving 1 min to
6 h later; a request error per 1,000 records. ``--batch-share`` of the records come in
/predict_batch requests of 100 (inputs logged as columns), the rest one per request.

Then `loopline monitor --log SOURCE --until END --json` (a subprocess, the 7 daily windows
of the default config covering every record; the Evidently HTML of the latest window too,
unless ``--no-html``: a fixed cost of some seconds whatever the log's size) runs on each
source, interleaved over ``--rounds`` rounds, under /usr/bin/time -v: wall seconds (median,
min–max) and the peak RSS of the process. The documents are checked to
agree (status, records, labels and performance of every window).

Needs data/prepared and models/ (`make run`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import BIN, OUT, ROOT, sample_records  # noqa: E402

START = 1_790_000_000.0 - 1_790_000_000.0 % 86400  # a UTC midnight
HOUR = 3600.0
BATCH = 100
TABLE = {"typed": "records", "json": "requests"}  # where the requests go, by --layout


def instance(tmp: Path) -> Path:
    """A copy of the reference instance with what `loopline monitor` reads."""
    dest = tmp / "instance"
    for rel in ("dvc.yaml", "params.yaml", "conf", "data/prepared/train.parquet"):
        src, target = ROOT / rel, dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, target)
    return dest


class Pool:
    """Pre-serialised inputs and outputs the generated requests pick from."""

    def __init__(self, rng: np.random.Generator, size: int = 5000) -> None:
        import orjson

        recs = sample_records(size)
        self.p = np.round(rng.beta(2, 5, size), 4)  # P(bad), a credit-risk-like skew
        self.single = [orjson.dumps([r]).decode() for r in recs]
        self.pred = [json.dumps(["bad" if p >= 0.5 else "good"]) for p in self.p]
        self.prob = [json.dumps([[float(p), float(round(1 - p, 4))]]) for p in self.p]
        names = sorted({k for r in recs for k in r})
        self.batches, self.batch_p = [], []
        for _ in range(50):
            idx = rng.integers(0, size, BATCH)
            self.batches.append(orjson.dumps({k: [recs[i].get(k) for i in idx] for k in names})
                                .decode())
            self.batch_p.append(self.p[idx])
        self.batch_pred = [json.dumps(["bad" if p >= 0.5 else "good" for p in ps])
                           for ps in self.batch_p]
        self.batch_prob = [json.dumps([[float(p), float(round(1 - p, 4))] for p in ps])
                           for ps in self.batch_p]

    def typed(self) -> object:
        """The typed records of every single record, then of every batch's records (as
        the shipper writes them), for the generated requests to take rows from."""
        from loopline.serving.log_records import records_table

        rows = [("", 0.0, "", 1, inp, pred, prob, '["bad","good"]', 0.0, None, None, None)
                for inp, pred, prob in zip(self.single, self.pred, self.prob, strict=True)]
        rows += [("", 0.0, "", BATCH, inp, pred, prob, '["bad","good"]', 0.0, None, None, None)
                 for inp, pred, prob in zip(self.batches, self.batch_pred, self.batch_prob,
                                            strict=True)]
        return records_table(rows, "")


def typed_records(pool_table: object, single: int, ids: object, ts: np.ndarray,
                  version: np.ndarray, latency: np.ndarray, n: np.ndarray, pick: np.ndarray,
                  bpick: np.ndarray, is_batch: np.ndarray, replica: str) -> object:
    """The typed records of the generated requests: rows of the pool, with their own
    request ids, times, versions and latencies."""
    import pyarrow as pa

    req = np.repeat(np.arange(len(n)), n)
    idx = np.arange(len(req)) - np.repeat(np.cumsum(n) - n, n)
    rows = np.where(is_batch[req], single + bpick[req] * BATCH + idx, pick[req])
    table = pool_table.take(pa.array(rows))
    for name, values in (("request_id", ids.take(pa.array(req))), ("idx", idx), ("ts", ts[req]),
                         ("model_version", version[req]), ("latency_ms", latency[req]),
                         ("n", n[req]), ("replica", [replica] * len(req))):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, table.schema.field(i),
                                 pa.array(values, table.schema.field(i).type))
    return table


def generate(args: argparse.Namespace, tmp: Path, s3: object) -> tuple[dict, float, int]:
    """Write the records to the two stores and SQLite; the sources, the end, the file count."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from loopline.serving import log_store
    from loopline.serving.inference_log import SCHEMA, connect

    rng = np.random.default_rng(0)
    pool = Pool(rng)
    pool_table = pool.typed() if args.layout == "typed" else None
    schemas = log_store._schemas()
    stores = [log_store.parse(f"file://{tmp}/store"), log_store.parse(s3.url("bench"))]
    fss = [s.filesystem() for s in stores]
    db = tmp / "inference.sqlite"
    conn = connect(db)
    conn.executescript(SCHEMA)
    hours = args.days * 24
    per = args.records // (hours * args.replicas)
    files, seq, base = 0, 0, 0
    t0 = time.perf_counter()

    def put(table_name: str, table: pa.Table, version: str | None, ts: float,
            replica: str) -> None:
        nonlocal files, seq
        seq += 1
        for store, fs in zip(stores, fss, strict=True):
            path = store.partition_dir(table_name, "credit-risk", version, ts)
            log_store.write_parquet(fs, f"{path}/{replica}-{seq:06d}.parquet", table)
        files += 1

    labels_by_hour: dict[int, list] = {}
    for h in range(hours):
        for r in range(args.replicas):
            replica = f"replica-{r + 1}"
            batched = int(per * args.batch_share) // BATCH
            singles = per - batched * BATCH
            n_req = singles + batched
            ids = pc.cast(pa.array(np.arange(base, base + n_req)), pa.string())
            ids = pc.binary_join_element_wise(f"{replica}-", ids, "")
            base += n_req
            ts = START + h * HOUR + np.sort(rng.random(n_req)) * HOUR
            is_batch = np.zeros(n_req, bool)
            is_batch[rng.choice(n_req, batched, replace=False)] = True
            pick = rng.integers(0, len(pool.single), n_req)
            bpick = rng.integers(0, len(pool.batches), n_req)
            inputs = [pool.batches[b] if isb else pool.single[i]
                      for i, b, isb in zip(pick, bpick, is_batch, strict=True)]
            preds = [pool.batch_pred[b] if isb else pool.pred[i]
                     for i, b, isb in zip(pick, bpick, is_batch, strict=True)]
            probs = [pool.batch_prob[b] if isb else pool.prob[i]
                     for i, b, isb in zip(pick, bpick, is_batch, strict=True)]
            n = np.where(is_batch, BATCH, 1)
            version = np.where((h >= 96) & (rng.random(n_req) < 0.9), "v2", "v1")
            latency = np.round(rng.lognormal(np.log(np.where(is_batch, 8.0, 0.6)), 0.4), 3)
            cols = {"request_id": ids, "ts": ts, "model_version": version, "n": n,
                    "inputs": inputs, "predictions": preds, "probabilities": probs,
                    "classes": ['["bad","good"]'] * n_req, "latency_ms": latency,
                    "shadow_version": [None] * n_req, "shadow_predictions": [None] * n_req,
                    "shadow_probabilities": [None] * n_req, "replica": [replica] * n_req}
            table = pa.table({k: pa.array(v, type=schemas["requests"].field(k).type)
                              if not isinstance(v, pa.Array) else v for k, v in cols.items()},
                             schema=schemas["requests"])
            shipped = table
            if pool_table is not None:
                shipped = typed_records(pool_table, len(pool.single), ids, ts, version, latency,
                                        n, pick, bpick, is_batch, replica)
            for v in ("v1", "v2"):
                part = shipped.filter(pc.equal(shipped["model_version"], v))
                if len(part):
                    put(TABLE[args.layout], part, v, START + h * HOUR, replica)
            rows = table.drop_columns(["replica"]).to_pylist()
            conn.executemany("INSERT INTO requests VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                             [tuple(d.values()) for d in rows])
            # labels: for a share of the records, P(bad) as the model said
            p_rec = [(rid, j, p) for rid, i, b, isb in zip(ids.to_pylist(), pick, bpick,
                                                             is_batch, strict=True)
                     for j, p in (enumerate(pool.batch_p[b]) if isb else [(0, pool.p[i])])]
            keep = rng.random(len(p_rec)) < args.label_share
            lab_ts = np.repeat(ts, n)[keep] + rng.uniform(60, 6 * HOUR, int(keep.sum()))
            truth = rng.random(int(keep.sum()))
            for (rid, j, p), t, u in zip([x for x, k in zip(p_rec, keep, strict=True) if k],
                                         lab_ts, truth, strict=True):
                labels_by_hour.setdefault(int((t - START) // HOUR), []).append(
                    (rid, j, "bad" if u < p else "good", float(t), replica))
            errs = rng.random(n_req) < 0.001 * n
            if errs.any():
                et = ts[errs] + 0.001
                etable = pa.table({"ts": et, "route": ["/predict"] * len(et),
                                   "status": rng.choice([400, 422, 503], len(et)),
                                   "model_version": version[errs],
                                   "replica": [replica] * len(et)}, schema=schemas["errors"])
                put("errors", etable, None, START + h * HOUR, replica)
                conn.executemany("INSERT INTO errors VALUES (?,?,?,?)",
                                 [tuple(d.values()) for d in
                                  etable.drop_columns(["replica"]).to_pylist()])
        conn.commit()
        if h % 24 == 23:
            print(f"  day {h // 24 + 1}: {base:,} requests, {time.perf_counter() - t0:.0f} s",
                  flush=True)
    for h, rows in sorted(labels_by_hour.items()):
        for r in range(args.replicas):  # feedback reaches any replica
            mine = rows[r::args.replicas]
            if not mine:
                continue
            ftable = pa.table({k: [x[i] for x in mine] for i, k in enumerate(
                ["request_id", "idx", "label", "ts", "replica"])}, schema=schemas["feedback"])
            put("feedback", ftable, None, START + h * HOUR, f"replica-{r + 1}")
        conn.executemany("INSERT OR REPLACE INTO feedback VALUES (?,?,?,?)",
                         [x[:4] for x in rows])
    conn.commit()
    conn.close()
    print(f"  written in {time.perf_counter() - t0:.0f} s", flush=True)
    return ({"SQLite": str(db), "file:// store": stores[0].url, "moto S3 store": stores[1].url},
            START + args.days * 86400.0, files)


def monitor(inst: Path, source: str, until: float, env: dict,
            html: bool = True) -> tuple[float, float, dict]:
    """Wall seconds, peak RSS (MB) and the document of one `loopline monitor` process."""
    t = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", str(BIN / "loopline"), "monitor", "--log",
                           source, "--until", repr(until), "--json", "--repo", str(inst),
                           *([] if html else ["--no-html"])],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode not in (0, 3, 4):
        raise SystemExit(f"loopline monitor --log {source} failed:\n{proc.stderr[-3000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    return wall, int(rss.group(1)) / 1024 if rss else float("nan"), json.loads(proc.stdout)


def summary(doc: dict) -> list:
    return [(w["status"], w.get("records"), w.get("labels"),
             round((w.get("performance") or {}).get("roc_auc") or 0, 9)) for w in doc["windows"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--label-share", type=float, default=0.25)
    ap.add_argument("--batch-share", type=float, default=0.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layout", choices=list(TABLE), default="typed",
                    help="the requests in the stores as typed records (what the shipper writes) "
                    "or as JSON (stores shipped before)")
    ap.add_argument("--keep", action="store_true", help="keep the generated logs (path shown)")
    ap.add_argument("--no-html", action="store_true", help="monitor without the Evidently "
                    "HTML report (a fixed cost, whatever the log's size)")
    args = ap.parse_args()
    if not (ROOT / "models/card.json").is_file():
        raise SystemExit("no model in models/: run `make run` first")
    OUT.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from tests.helpers.s3 import moto_s3

    tmp = Path(tempfile.mkdtemp(prefix="loopline-bench-monitor-"))
    try:
        inst = instance(tmp)
        with moto_s3() as s3:
            saved = dict(os.environ)
            os.environ.update(s3.env())
            try:
                print(f"writing {args.records:,} records over {args.days} days "
                      f"({args.replicas} replicas, {args.batch_share:.0%} in batches of "
                      f"{BATCH}, {args.label_share:.0%} labelled, {args.layout} layout)",
                      flush=True)
                sources, until, files = generate(args, tmp, s3)
            finally:
                os.environ.clear()
                os.environ.update(saved)
            parts = {k.rsplit("/", 1)[0] for k in s3.keys(f"bench/{TABLE[args.layout]}/")}
            env = {**s3.env(), "OMP_WAIT_POLICY": "PASSIVE"}
            env.pop("LOOPLINE_LOG_STORE", None)
            size = sum(f.stat().st_size for f in (tmp / "store").rglob("*.parquet"))
            print(f"  {files} Parquet files ({len(parts)} request partitions, "
                  f"{size / 2**20:.0f} MiB) per store; SQLite "
                  f"{Path(sources['SQLite']).stat().st_size / 2**20:.0f} MiB", flush=True)
            results: dict[str, list] = {name: [] for name in sources}
            names = list(sources)
            docs = {}
            for r in range(args.rounds):
                for name in names[r % 3:] + names[:r % 3]:
                    wall, rss, doc = monitor(inst, sources[name], until, env,
                                             html=not args.no_html)
                    results[name].append((wall, rss))
                    docs[name] = doc
                    print(f"  round {r + 1} {name:<15}{wall:7.2f} s {rss:7.0f} MB  "
                          f"{doc['status']}", flush=True)
    finally:
        if args.keep:
            print(f"  kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    ref = summary(docs["SQLite"])
    agree = all(summary(d) == ref for d in docs.values())
    print(f"\n`loopline monitor` over {args.records:,} records, {args.rounds} interleaved "
          f"rounds (shared machine, 2 cores; HTML report {'off' if args.no_html else 'on'}), "
          "median (min–max):")
    print(f"  {'source':<16}{'seconds':>8}  {'(min–max)':<14}{'peak RSS MB':>12}")
    out = {}
    for name, values in results.items():
        walls, rss = [v[0] for v in values], [v[1] for v in values]
        print(f"  {name:<16}{statistics.median(walls):8.2f}  ({min(walls):.2f}–{max(walls):.2f})"
              f"{max(rss):>10.0f}")
        out[name] = {"seconds": statistics.median(walls), "min": min(walls), "max": max(walls),
                     "peak_rss_mb": max(rss)}
    print(f"  same windows (status, records, labels, ROC AUC) from every source: {agree}")
    sampled = [w.get("drift_sample") for w in docs["SQLite"]["windows"] if w.get("drift_sample")]
    if sampled:
        print(f"  drift on a seeded sample of {sampled[0]['rows']:,} records per window")
    print("  targets: store ≤ 10 s and ≤ 1024 MB peak RSS")
    (OUT / "monitor_scale.json").write_text(json.dumps(
        {"records": args.records, "layout": args.layout, "files": files, "agree": agree,
         "load_average": os.getloadavg(), **out}, indent=2))


if __name__ == "__main__":
    main()
