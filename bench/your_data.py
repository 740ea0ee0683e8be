"""A new user's data: ``loopline init`` time, and ``loopline run`` against a plain
scikit-learn script doing the same search, per synthetic set, measured side by side.

1. ``loopline init`` on a 10,000 × 56 CSV (55 columns with gaps and a target).
2. For each set of tests/helpers/synthetic.py: ``loopline init`` with its defaults, then
   ``loopline run`` (ingest → gate: validation, the search, evaluation, ONNX export and
   parity, the Evidently gate, every report) in a fresh instance, against a script that
   reads the CSV and runs the same scikit-learn search (same features, estimator, space,
   n_iter, cv, scoring, split) and scores the held-out rows, and nothing else.

Wall: ``loopline run`` from start to exit against the script's search from its imports to
its scores (its own start-up and exit left out). CPU: user + system seconds of each whole
process tree (the search workers included), which a busy machine disturbs less than wall
time.

``--rows-times K`` makes every set K times its rows (the same kind of data, larger), to
show how the fixed cost of a run (DVC, the Evidently gate, the ONNX export, the reports)
weighs against a search that grows with the data.

Usage: python bench/your_data.py [--repeat N] [--sets odd_names,small] [--search small]
                                 [--rows-times K]
"""

from __future__ import annotations

import argparse
import inspect
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))

from tests.helpers import synthetic  # noqa: E402
from tests.helpers.instance import shadow_default  # noqa: E402

SMALL_SEARCH = """\
method: random
n_iter: 3
cv: 3
scoring: roc_auc
n_jobs: -1
halving_factor: 3
backend: local
dask_scheduler: null
"""

# The same search in plain scikit-learn: what a user would write without loopline.
PLAIN = r"""
import sys, time, importlib, yaml
t = time.perf_counter()
import numpy as np, pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import RandomizedSearchCV, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder
p = yaml.safe_load(open(sys.argv[1] + "/params.yaml"))
d, s, m = p["data"], p["search"], p["model"]
cols = d["schema"]["columns"]
# gaps as the file marks them ("?", " "): what a user's script must tell pandas too
marks = {c: r["missing_values"] for c, r in cols.items() if r.get("missing_values")}
df = pd.read_csv(sys.argv[1] + "/" + d["source"], sep=sys.argv[2], na_values=marks,
                 skipinitialspace=True)
df = df[df[d["target"]].notna()]  # rows without a label: not training rows
skip = {d["target"], d["id_column"], d["order_column"], *p["features"]["drop"]}
num = [c for c, r in cols.items() if c not in skip and r["type"] != "category"]
cat = [c for c, r in cols.items() if c not in skip and r["type"] == "category"]
y = df[d["target"]].astype(str)
tr, te = train_test_split(df, test_size=d["split"]["test_size"], stratify=y, random_state=p["seed"])
prep = ColumnTransformer([
    ("num", SimpleImputer(strategy="median"), num),
    ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                          OneHotEncoder(handle_unknown="ignore")), cat)])
mod, _, cls = m["estimator"]["_target_"].rpartition(".")
est = getattr(importlib.import_module(mod), cls)(**{k: v for k, v in m["estimator"].items() if k != "_target_"})
n_classes = y.nunique()
search = RandomizedSearchCV(Pipeline([("prep", prep), ("model", est)]),
                            {f"model__{k}": v for k, v in m["search_space"].items()},
                            n_iter=s["n_iter"], cv=s["cv"], n_jobs=s["n_jobs"], random_state=p["seed"],
                            scoring="roc_auc_ovr" if n_classes > 2 else "roc_auc")
search.fit(tr, tr[d["target"]].astype(str))
proba = search.predict_proba(te)
yt = te[d["target"]].astype(str)
auc = roc_auc_score(yt, proba, multi_class="ovr") if n_classes > 2 else roc_auc_score(yt, proba[:, 1])
print(time.perf_counter() - t)
"""


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    return measured(cmd, cwd, env)[0]


def measured(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the process and the children it waited for, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode not in (0, 1) or (res.returncode == 1 and '"gate"' not in res.stdout):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, res.stdout


def init(base: Path, name: str, frame, target: str, env: dict, search: str | None,
         sep: str = ",") -> tuple[Path, float]:
    csv = base / f"{name}.csv"
    frame.to_csv(csv, index=False, sep=sep)
    took = timed([str(BIN / "loopline"), "init", name, "--data", str(csv), "--target", target],
                 base, env)
    repo = base / name
    if search == "small":
        shadow_default(repo, "search/random.yaml", SMALL_SEARCH)
        timed([str(BIN / "loopline"), "params"], repo, env)
        subprocess.run(["git", "commit", "-qam", "small search"], cwd=repo, env=env, check=True)
    return repo, took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--sets", default=",".join(synthetic.ALL))
    ap.add_argument("--search", choices=["default", "small"], default="default")
    ap.add_argument("--rows-times", type=float, default=1.0,
                    help="every set with this many times its rows")
    args = ap.parse_args()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    rows = []
    with tempfile.TemporaryDirectory(prefix="loopline-bench-data-") as tmp:
        base = Path(tmp)
        wide, target = synthetic.wide_with_gaps(n=10_000, cols=53)
        inits = [init(base, f"wide{i}", wide, target, env, None)[1] for i in range(args.repeat)]
        print(f"init on {len(wide):,} × {wide.shape[1]}: {statistics.median(inits):.2f} s "
              f"(target < 10 s; {_spread(inits)})", flush=True)
        for name in args.sets.split(","):
            make = synthetic.ALL[name]
            rows_n = int(inspect.signature(make).parameters["n"].default * args.rows_times)
            frame, target = make(n=rows_n)
            ours, plain, ours_cpu, plain_cpu = [], [], [], []
            for i in range(args.repeat):
                sep = synthetic.CSV_OPTIONS.get(name, {}).get("sep", ",")
                repo, _ = init(base, f"{name}{i}", frame, target, env, args.search, sep)
                wall, cpu, _ = measured([str(BIN / "loopline"), "run", "--json"], repo, env)
                ours.append(wall)
                ours_cpu.append(cpu)
                _, cpu, out = measured([sys.executable, "-c", PLAIN, str(repo), sep], repo, env)
                plain.append(float(out.strip().splitlines()[-1]))
                plain_cpu.append(cpu)
            print(f"  {name}: loopline run {statistics.median(ours):.1f} s ({statistics.median(ours_cpu):.1f} s "
                  f"CPU), plain scikit-learn {statistics.median(plain):.1f} s "
                  f"({statistics.median(plain_cpu):.1f} s CPU)", flush=True)
            rows.append((name, *(statistics.median(v) for v in (ours, plain, ours_cpu, plain_cpu))))
    print()
    if args.rows_times != 1:
        print(f"every set with {args.rows_times:g} times its rows")
    print(f"{'set (' + args.search + ' search)':<22} {'loopline run':>13} {'plain sklearn':>14} "
          f"{'ratio':>7} {'CPU: loopline':>14} {'plain':>7} {'ratio':>7}  target")
    for name, ours, theirs, ours_cpu, theirs_cpu in rows:
        print(f"{name:<22} {ours:>12.1f}s {theirs:>13.1f}s {ours / theirs:>6.2f}× "
              f"{ours_cpu:>13.1f}s {theirs_cpu:>6.1f}s {ours_cpu / theirs_cpu:>6.2f}×  ≤ 1.3×")


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f} s"


if __name__ == "__main__":
    main()
