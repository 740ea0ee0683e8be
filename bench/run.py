"""Pipeline benchmarks, measured side by side in one run and printed as ratios.

1. End-to-end ``loopline run`` on the default data in a fresh copy of the instance (no DVC
   cache) against a bare script doing the same work in one process: the same stage
   functions (ingest → gate), the same search, the same exports and reports, but no DVC,
   no Hydra, no subprocesses.
2. A no-op ``loopline run`` and a no-op ``dvc repro`` on the built copy.
3. ``loopline --help`` start-up.

Usage: python bench/run.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "tests"))

from conftest import make_instance  # noqa: E402  (the same copy the tests make)

BARE = r"""
import sys, time, yaml
from pathlib import Path
from loopline.config import Params
from loopline.stages import ingest, validate, prepare, train, evaluate, export, gate
root = Path(sys.argv[1])
params = Params.model_validate(yaml.safe_load((root / "params.yaml").read_text()))
t = time.perf_counter()
from loopline.champion import refresh_champion
refresh_champion(root, params.paths.reports, params.gate.champion.stage)
for stage in (ingest, validate, prepare, train, evaluate, export, gate):
    stage.run(params, root)
print(time.perf_counter() - t)
"""


def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> float:
    started = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
    return elapsed


def fresh_copy(base: Path, name: str) -> Path:
    """The reference instance with the default (full) search, as a new git + DVC repo."""
    return make_instance(base / name, fast=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3, help="repeats of each measurement")
    args = ap.parse_args()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    loopline = str(BIN / "loopline")
    rows: list[tuple[str, float, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="loopline-bench-") as tmp:
        base = Path(tmp)
        e2e, bare = [], []
        for i in range(args.repeat):
            repo = fresh_copy(base, f"e2e{i}")
            e2e.append(timed([loopline, "run"], repo, env))
            bare_repo = fresh_copy(base, f"bare{i}")
            bare.append(timed([sys.executable, "-c", BARE, str(bare_repo)], bare_repo, env))
            print(f"  run {i + 1}: loopline run {e2e[-1]:.1f} s, bare script {bare[-1]:.1f} s", flush=True)
        rows.append(("end-to-end: loopline run vs bare script", statistics.median(e2e),
                     statistics.median(bare), "≤ 1.3×"))
        repo = base / "e2e0"
        noop_run = [timed([loopline, "run"], repo, env) for _ in range(args.repeat)]
        noop_dvc = [timed([str(BIN / "dvc"), "repro"], repo, env) for _ in range(args.repeat)]
        helps = [timed([loopline, "--help"], repo, env) for _ in range(args.repeat * 3)]
        shutil.rmtree(base, ignore_errors=True)

    print()
    print(f"{'measurement':<44} {'loopline':>10} {'baseline':>10} {'ratio':>7}  target")
    for name, ours, theirs, target in rows:
        print(f"{name:<44} {ours:>9.2f}s {theirs:>9.2f}s {ours / theirs:>6.2f}×  {target}")
    print(f"{'no-op loopline run':<44} {statistics.median(noop_run):>9.2f}s {'':>10} {'':>7}  < 2 s")
    print(f"{'no-op dvc repro':<44} {statistics.median(noop_dvc):>9.2f}s {'':>10} {'':>7}  < 2 s")
    print(f"{'loopline --help':<44} {statistics.median(helps):>9.3f}s {'':>10} {'':>7}  < 0.5 s")


if __name__ == "__main__":
    main()
