"""Pipeline benchmarks, measured side by side in one run and printed as ratios.

1. End-to-end ``loopline run`` on the default data in a fresh copy of the instance (no DVC
   cache) against a bare script doing the same work in one process: the same stage
   functions (ingest → gate), the same search, the same exports and reports, but no DVC,
   no Hydra, no subprocesses.
   The same with ``--isolated`` (every stage in its own process, as a plain ``dvc repro``
   runs them) shows what running stages inside dvc's process saves.
2. A no-op ``loopline run`` and a no-op ``dvc repro`` on the built copy.
3. ``loopline --help`` start-up.
4. With ``--your-data``: a new user's data instead (bench/your_data.py): ``loopline init``
   on a 10,000 × 56 CSV, and per synthetic set ``loopline run`` against a plain
   scikit-learn script doing the same search.

Usage: python bench/run.py [--repeat N] [--your-data [--search small]]
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
sys.path.insert(0, str(REPO))

from tests.helpers.instance import make_instance  # noqa: E402  (the same copy the tests make)

BARE = r"""
import sys, time, yaml
from pathlib import Path
from loopline.config.params import Params
from loopline.pipeline.stages import ingest, validate, prepare, train, evaluate, export, gate
root = Path(sys.argv[1])
params = Params.model_validate(yaml.safe_load((root / "params.yaml").read_text()))
t = time.perf_counter()
from loopline.registry.champion import refresh_champion
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
    ap.add_argument("--your-data", action="store_true",
                    help="measure init and run on the synthetic sets (bench/your_data.py)")
    args, rest = ap.parse_known_args()
    if args.your_data:
        sys.path.insert(0, str(REPO / "bench"))
        import your_data

        sys.argv = [sys.argv[0], "--repeat", str(args.repeat), *rest]
        your_data.main()
        return
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    loopline = str(BIN / "loopline")
    rows: list[tuple[str, float, float, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="loopline-bench-") as tmp:
        base = Path(tmp)
        e2e, isolated, bare = [], [], []
        for i in range(args.repeat):
            repo = fresh_copy(base, f"e2e{i}")
            e2e.append(timed([loopline, "run"], repo, env))
            iso_repo = fresh_copy(base, f"iso{i}")
            isolated.append(timed([loopline, "run", "--isolated"], iso_repo, env))
            bare_repo = fresh_copy(base, f"bare{i}")
            bare.append(timed([sys.executable, "-c", BARE, str(bare_repo)], bare_repo, env))
            print(f"  run {i + 1}: loopline run {e2e[-1]:.1f} s, --isolated {isolated[-1]:.1f} s, "
                  f"bare script {bare[-1]:.1f} s", flush=True)
        for name, times, target in (("end-to-end: loopline run vs bare script", e2e, "≤ 1.3×"),
                                    ("  (each stage its own process: --isolated)", isolated, "")):
            ratios = [a / b for a, b in zip(times, bare, strict=True)]
            rows.append((name, statistics.median(times), statistics.median(bare), target,
                         _spread(ratios, "×")))
        repo = base / "e2e0"
        noop_run = [timed([loopline, "run"], repo, env) for _ in range(args.repeat)]
        noop_dvc = [timed([str(BIN / "dvc"), "repro"], repo, env) for _ in range(args.repeat)]
        helps = [timed([loopline, "--help"], repo, env) for _ in range(args.repeat * 3)]
        shutil.rmtree(base, ignore_errors=True)

    print()
    print(f"{'measurement (medians)':<44} {'loopline':>10} {'baseline':>10} {'ratio':>7}  "
          f"{'target':<8} spread")
    for name, ours, theirs, target, spread in rows:
        print(f"{name:<44} {ours:>9.2f}s {theirs:>9.2f}s {ours / theirs:>6.2f}×  "
              f"{target:<8} {spread}")
    print(f"{'no-op loopline run':<44} {statistics.median(noop_run):>9.2f}s {'':>10} {'':>7}  "
          f"{'< 2 s':<8} {_spread(noop_run, ' s')}")
    print(f"{'no-op dvc repro':<44} {statistics.median(noop_dvc):>9.2f}s {'':>10} {'':>7}  "
          f"{'< 2 s':<8} {_spread(noop_dvc, ' s')}")
    print(f"{'loopline --help':<44} {statistics.median(helps):>9.3f}s {'':>10} {'':>7}  "
          f"{'< 0.5 s':<8} {_spread(helps, ' s', 3)}")


def _spread(values: list[float], unit: str, digits: int = 2) -> str:
    """min–max of the repeats, so a median from a busy machine shows as such."""
    return f"{min(values):.{digits}f}–{max(values):.{digits}f}{unit}"


if __name__ == "__main__":
    main()
