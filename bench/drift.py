"""Drift check of a big window: loopline's columnar tests against Evidently's DataDriftPreset.

    python bench/drift.py [--rows 1000000] [--reference 100000]

One run, same data: a 100,000-row reference and a 1,000,000-row current window of 10
columns (8 numeric, 2 categorical, with gaps); four columns drift. Each side runs in its own
process so its time and peak memory (max RSS, including the data it was handed) are its
own. The per-column verdicts must agree; the figures to reach are under 2 s and 500 MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

NUMERIC = [f"n{i}" for i in range(8)]
CATEGORICAL = ["c0", "c1"]


def make_data(rows: int, seed: int, drift: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    for i, name in enumerate(NUMERIC):
        shift = 0.3 if drift and i in (0, 3) else 0.0
        values = rng.normal(loc=10 * i + shift * (i + 1), scale=i + 1, size=rows)
        if i == 5:
            values = rng.integers(0, 4, size=rows).astype(float)  # few values: JS, not Wasserstein
        values[rng.random(rows) < 0.05] = np.nan
        cols[name] = values
    mixes = ([0.5, 0.3, 0.2], [0.35, 0.35, 0.3]) if drift else ([0.5, 0.3, 0.2], [0.4, 0.4, 0.2])
    cols["c0"] = rng.choice(np.array(["a", "b", "c"], dtype=object), size=rows, p=mixes[0])
    cols["c1"] = rng.choice(np.array(["x", "y", "z"], dtype=object), size=rows, p=mixes[1])
    if drift:
        cols["c0"] = rng.choice(np.array(["a", "b", "c"], dtype=object), size=rows, p=[0.3, 0.3, 0.4])
    cols["c1"][rng.random(rows) < 0.02] = None
    return cols


def child(which: str, rows: int, ref_rows: int) -> None:
    import pandas as pd

    reference = pd.DataFrame(make_data(ref_rows, 1, drift=False))
    current = pd.DataFrame(make_data(rows, 2, drift=True))
    for c in CATEGORICAL:
        reference[c] = reference[c].astype(object)
        current[c] = current[c].astype(object)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if which == "loopline":
        from loopline.monitoring.drift import dataset_drift

        result = {d.column: (d.method, d.value, d.drifted)
                  for d in dataset_drift(reference, current, NUMERIC, CATEGORICAL)}
    else:
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        dd = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
        snap = Report([DataDriftPreset(columns=NUMERIC + CATEGORICAL)]).run(
            current_data=Dataset.from_pandas(current, data_definition=dd),
            reference_data=Dataset.from_pandas(reference, data_definition=dd))
        result = {}
        for m in snap.dict()["metrics"]:
            conf = m["config"]
            if conf["type"].endswith(":ValueDrift"):
                value, thr, method = float(m["value"]), conf["threshold"], conf["method"]
                p_value = method.lower() in ("ks", "chisquare", "z", "k-s p_value", "chi-square p_value",
                                             "z-test p_value")
                result[conf["column"]] = (method, value, value < thr if p_value else value >= thr)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mb": peak / 1024, "data_mb": base_rss / 1024,
                      "columns": result}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reference", type=int, default=100_000)
    ap.add_argument("--child", choices=["loopline", "evidently"])
    args = ap.parse_args()
    if args.child:
        child(args.child, args.rows, args.reference)
        return
    out = {}
    for which in ("loopline", "evidently"):
        res = subprocess.run([sys.executable, str(Path(__file__)), "--child", which, "--rows",
                              str(args.rows), "--reference", str(args.reference)],
                             capture_output=True, text=True, check=True)
        out[which] = json.loads(res.stdout.strip().splitlines()[-1])
    ll, ev = out["loopline"], out["evidently"]
    print(f"{args.rows:,} rows × {len(NUMERIC) + len(CATEGORICAL)} columns against "
          f"{args.reference:,} reference rows\n")
    print(f"{'':<12}{'seconds':>9}{'peak MB':>9}{'of which data':>15}")
    for name, r in out.items():
        print(f"{name:<12}{r['seconds']:>9.2f}{r['peak_mb']:>9.0f}{r['data_mb']:>15.0f}")
    print(f"\nspeed-up {ev['seconds'] / ll['seconds']:.1f}×, memory {ll['peak_mb'] / ev['peak_mb']:.2f}× "
          "of Evidently's  (targets: < 2 s, < 500 MB)\n")
    print(f"{'column':<8}{'loopline':>34}{'evidently':>46}  agree")
    agree = True
    for col in NUMERIC + CATEGORICAL:
        lm, lv, ld = ll["columns"][col]
        em, evv, ed = ev["columns"][col]
        agree &= ld == ed
        print(f"{col:<8}{lm:>20} {lv:>8.4f} {'DRIFT' if ld else 'ok':>5}"
              f"{em:>32} {evv:>8.4f} {'DRIFT' if ed else 'ok':>5}  {'yes' if ld == ed else 'NO'}")
    print(f"\nsame verdict on every column: {'yes' if agree else 'NO'}")


if __name__ == "__main__":
    main()
