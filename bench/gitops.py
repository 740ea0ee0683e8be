"""GitOps timings: `loopline report` and `loopline ci pr` on a no-op change.

    python bench/gitops.py [--repeat 3]

Builds a temp copy of the reference instance (pipeline run once, outputs pushed to a local
DVC remote, a bare origin), clones it the way CI checks out a pull request, commits a change
that touches no pipeline input, then times each command (best and median of --repeat runs).
Targets: report < 3 s, ci pr < 15 s.
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

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FILES = ["dvc.yaml", "params.yaml", ".dvcignore", "conf", "data/credit_data.csv",
         "reports/champion.json", "data/README.md", ".github/workflows", "src/loopline"]


def sh(*args: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return res.stdout


def timed(args: list[str], cwd: Path, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        sh(*args, cwd=cwd)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="loopline-gitops-bench-"))
    try:
        up = tmp / "upstream"
        for rel in FILES:
            src, dst = ROOT / rel, up / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
        sh("git", "init", "-q", "-b", "main", cwd=up)
        sh(str(BIN / "dvc"), "init", "-q", cwd=up)
        shutil.copy2(ROOT / ".dvc" / "config", up / ".dvc" / "config")
        sh(str(BIN / "dvc"), "remote", "add", "-d", "store", str(tmp / "dvc-remote"), cwd=up)
        print("running the pipeline once for the base commit …", flush=True)
        sh(str(BIN / "loopline"), "run", cwd=up)
        sh(str(BIN / "dvc"), "push", "-q", cwd=up)
        sh("git", "add", "-A", cwd=up)
        sh("git", "commit", "-q", "-m", "base", cwd=up)
        sh("git", "clone", "-q", "--bare", str(up), str(tmp / "origin.git"), cwd=tmp)
        work = tmp / "work"
        sh("git", "clone", "-q", str(tmp / "origin.git"), str(work), cwd=tmp)
        sh(str(BIN / "loopline"), "pull", cwd=work)
        sh(str(BIN / "loopline"), "run", cwd=work)  # restores the champion link, no stage runs
        (work / "data" / "README.md").write_text((work / "data" / "README.md").read_text() + "\n")
        sh("git", "commit", "-qam", "a change that touches no pipeline input", cwd=work)
        report = timed([str(BIN / "loopline"), "report", "--base", "origin/main"], work, args.repeat)
        ci = timed([str(BIN / "loopline"), "ci", "pr", "--json"], work, args.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{'command':<34}{'best s':>8}{'median s':>10}  target")
    for name, t, target in (("loopline report", report, "< 3 s"),
                            ("loopline ci pr (no-op change)", ci, "< 15 s")):
        print(f"{name:<34}{min(t):>8.2f}{statistics.median(t):>10.2f}  {target}")


if __name__ == "__main__":
    main()
