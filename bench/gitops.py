"""GitOps timings, side by side: `loopline ci pr` vs `loopline run` of the same one-parameter
change, and `loopline report`.

    python bench/gitops.py [--repeat 1] [--no-op]

Builds the reference instance as a repository of its own (this checkout's files, one
commit), runs its pipeline once, pushes the outputs to a local DVC remote and makes a bare
origin, then clones it as a developer would and pulls. The change: one parameter
(`model.estimator.max_iter` 200 -> 150, so train and everything after it rerun); with
`--no-op`, a comment added to conf/config.yaml instead (the pipeline stays up to date), so
`ci pr` is nearly all its own cost.

- `loopline run` runs it on the developer's checkout;
- `loopline ci pr` runs pr.yml with nektos/act on a clean clone of the commit: restore the
  venv of uv.lock (actions/cache), install loopline from uv.lock (uv's cache is warm),
  `loopline pull` from the remote, the same repro (its exit status the gate's verdict),
  the review report.

Each is timed from a copy of the same pulled checkout; the ratio is ci / run (target
<= 1.5), and the overhead is ci minus run (per round, then the median), beside ci minus its
own repro step (the same, without the repro's own swing between the two). `loopline ci`
leaves work that only saves time to a background process after it has reported (removing
the run's folder, a spare tree of links for the next restore): the bench waits for it,
untimed, before each timed command, so rounds do not slow each other. The actions cache
is the bench's own (LOOPLINE_CI_CACHE in its temporary directory): the first `ci pr` finds
it empty (a new uv.lock: install and save the venv, shown as "cold"), the timed rounds
restore what it saved, as a pull request on GitHub restores the venv the base branch's run
saved.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loopline.gitops import ci as loopline_ci

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHANGES = {  # what the pull request changes, and how the table names it
    "param": ("\nmodel:\n  estimator:\n    max_iter: 150\n", "one-parameter change (max_iter 200 -> 150)"),
    "no-op": ("# a comment: the pipeline stays up to date\n", "no-op change (a comment in conf/)"),
}
EXTRA_ENV: dict[str, str] = {}


def sh(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        **EXTRA_ENV,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
    }
    res = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return res.stdout


def timed(args: list[str], cwd: Path, out: list[str] | None = None) -> float:
    """Seconds of one command, once the background work of earlier ones is done."""
    if not loopline_ci.wait_background():
        print("note: background work of loopline ci still going after 600 s", flush=True)
    start = time.perf_counter()
    text = sh(*args, cwd=cwd)
    if out is not None:
        out.append(text)
    return time.perf_counter() - start


def reference_repo(dest: Path) -> None:
    listed = sh("git", "ls-files", "-z", "-co", "--exclude-standard", cwd=ROOT).split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    sh("git", "init", "-q", "-b", "main", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-q", "-m", "reference", cwd=dest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--no-op", action="store_true", help="A comment in conf/, nothing to rerun.")
    args = ap.parse_args()
    change, title = CHANGES["no-op" if args.no_op else "param"]
    tmp = Path(tempfile.mkdtemp(prefix="loopline-gitops-bench-"))
    EXTRA_ENV["LOOPLINE_CI_CACHE"] = os.environ["LOOPLINE_CI_CACHE"] = str(tmp / "act-cache")
    loopline = str(BIN / "loopline")
    runs: list[float] = []
    cis: list[float] = []
    reports: list[float] = []
    ci_docs: list[str] = []
    try:
        up = tmp / "upstream"
        reference_repo(up)
        sh(str(BIN / "dvc"), "remote", "add", "-d", "store", str(tmp / "dvc-remote"), cwd=up)
        print("running the pipeline once for the base commit …", flush=True)
        sh(loopline, "run", cwd=up)
        sh(loopline, "push", cwd=up)
        sh("git", "add", "-A", cwd=up)
        sh("git", "commit", "-q", "-m", "base outputs", cwd=up)
        sh("git", "clone", "-q", "--bare", str(up), str(tmp / "origin.git"), cwd=tmp)
        work = tmp / "work"
        sh("git", "clone", "-q", str(tmp / "origin.git"), str(work), cwd=tmp)
        sh(loopline, "pull", cwd=work)
        sh(loopline, "run", cwd=work)  # nothing to run: the outputs of main are pulled
        sh("git", "checkout", "-q", "-b", "fewer-iterations", cwd=work)
        with (work / "conf" / "config.yaml").open("a") as fh:
            fh.write(change)
        sh(loopline, "params", cwd=work)
        sh("git", "commit", "-qam", title, cwd=work)
        print("loopline ci pr with an empty actions cache (cold) …", flush=True)
        cold_docs: list[str] = []
        c = tmp / "ci-cold"
        shutil.copytree(work, c, symlinks=True)
        cold = timed([loopline, "ci", "pr", "--json"], c, cold_docs)
        shutil.rmtree(c, ignore_errors=True)
        for i in range(args.repeat):
            print(f"round {i + 1}: loopline run …", flush=True)
            a = tmp / f"run-{i}"
            shutil.copytree(work, a, symlinks=True)
            runs.append(timed([loopline, "run"], a))
            reports.append(timed([loopline, "report", "--base", "origin/main"], a))
            print(f"round {i + 1}: loopline ci pr …", flush=True)
            b = tmp / f"ci-{i}"
            shutil.copytree(work, b, symlinks=True)
            cis.append(timed([loopline, "ci", "pr", "--json"], b, ci_docs))
            for d in (a, b):
                shutil.rmtree(d, ignore_errors=True)
    finally:
        loopline_ci.wait_background()
        shutil.rmtree(tmp, ignore_errors=True)
    run, ci = statistics.median(runs), statistics.median(cis)
    repros = [_repro_seconds(doc) for doc in ci_docs]
    print(f"\n{title:<46}{'median s':>10}")
    print(f"{'loopline run (developer checkout)':<46}{run:>10.1f}")
    print(f"{'loopline ci pr (act, clean clone, venv cached)':<46}{ci:>10.1f}")
    print(f"{'ratio ci pr / run (target <= 1.5)':<46}{ci / run:>10.2f}")
    overhead = statistics.median(c - r for c, r in zip(cis, runs, strict=True))
    print(f"{'ci pr overhead (ci pr minus run)':<46}{overhead:>10.1f}")
    beyond = statistics.median(c - r for c, r in zip(cis, repros, strict=True))
    print(f"{'ci pr minus its own repro step':<46}{beyond:>10.1f}")
    print(f"{'loopline ci pr, cold (new uv.lock: no venv)':<46}{cold:>10.1f}")
    print(f"{'ratio cold ci pr / run':<46}{cold / run:>10.2f}")
    print(f"{'loopline report (target < 3 s)':<46}{statistics.median(reports):>10.2f}")
    print("\nper round: " + "; ".join(
        f"run {r:.1f}, ci pr {c:.1f} (its repro {p:.1f})" for r, c, p in zip(runs, cis, repros, strict=True)))
    warm = json.loads(ci_docs[-1].strip().splitlines()[-1])
    first = json.loads(cold_docs[-1].strip().splitlines()[-1])
    print("\nloopline ci pr, seconds per step (the rest: clone, act, start-up):")
    print(f"  {'step':<56}{'cold':>8}{'cached':>8}  outcome (cached)")
    for c_step, step in zip(first["steps"], warm["steps"], strict=True):
        secs = [("-" if s["seconds"] is None else f"{s['seconds']:.1f}") for s in (c_step, step)]
        print(f"  {step['step'][:54]:<56}{secs[0]:>8}{secs[1]:>8}  {step['outcome']}")


def _repro_seconds(doc: str) -> float:
    """The seconds of the repro step in the JSON of a `loopline ci pr --json` run."""
    steps = json.loads(doc.strip().splitlines()[-1])["steps"]
    return next(s["seconds"] for s in steps if s["step"].startswith("Reproduce"))


if __name__ == "__main__":
    main()
