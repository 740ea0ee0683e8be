"""Registry benchmark: loopline's Git-tag registry against GTO on the same large repo.

Builds a temporary repository with 1,000 registered versions (one commit each, every
tenth with a failed gate) and 1,000 stage assignments (600 prod, 400 staging) in one
``git fast-import`` run, in loopline's tag format, which GTO reads too. Then times whole
commands as subprocesses (wall time, median of several runs, the repo restored after each
run that writes a tag) and prints them side by side with the GTO command doing the same
thing, and the ratio:

    which prod       loopline which prod              gto show credit-risk#prod
    promote staging  loopline promote V --to staging  gto assign credit-risk --version V
                                                          --stage staging --force
    rollback prod    loopline rollback --stage prod   gto assign credit-risk --version PREV
                                                          --stage prod --force
    which (gto show) loopline which prod              gto show (the registry table)
    history          loopline history --json          gto history credit-risk

GTO has no rollback: its closest equivalent is assigning the previous version, without
looking up which one that is. ``--force`` because GTO refuses to assign a version that
was in the stage before, even when it no longer is. loopline's target is under 0.3 s for
which, promote and rollback. Figures are printed, never asserted.

Usage: python bench/registry.py [--versions 1000] [--assignments 1000] [--repeat 7]
                                [--gto-repeat 1] [--gto PATH | --no-gto] [--keep] [--no-bytecode]
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

ART = "credit-risk"
BASE_TIME = 1_700_000_000
IDENT = "Bench User <bench@loopline.invalid>"
ENV = {**os.environ, "GIT_AUTHOR_NAME": "Bench User", "GIT_AUTHOR_EMAIL": "bench@loopline.invalid",
       "GIT_COMMITTER_NAME": "Bench User", "GIT_COMMITTER_EMAIL": "bench@loopline.invalid",
       "DVC_NO_ANALYTICS": "1", "GTO_EMOJIS": "false"}
ENV.pop("GIT_COMMITTER_DATE", None)

# The installed `loopline` once cli.py calls add_commands; until then the same entry point
# with the registry commands added (identical imports).
SHIM = """\
from loopline.cli.app import app, main
from loopline.cli.registry import add_commands
if "which" not in {c.name for c in app.registered_commands}:
    add_commands(app)
main()
"""


def version_name(i: int) -> str:
    """The i-th version (1-based): v0.1.0 … v0.99.0, v1.0.0 … (semver order = i order)."""
    return f"v{i // 100}.{i % 100}.0"


def _data(text: str) -> bytes:
    raw = text.encode()
    return b"data %d\n" % len(raw) + raw + b"\n"


def _version_meta(i: int, seq: int, commit_label: str) -> dict:
    passed = i % 10 != 0
    return {"loopline": 1, "seq": seq, "event": "register", "artifact": ART,
            "version": version_name(i), "commit": commit_label, "who": IDENT,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(BASE_TIME + seq)),
            "forced": not passed, "reason": None if passed else "bench: forced",
            "gate": {"verdict": "pass" if passed else "fail",
                     "checks": [{"name": "roc_auc", "value": 0.8 if passed else 0.6,
                                 "threshold": 0.7, "op": ">=", "passed": passed, "reason": ""}],
                     "champion": None, "candidate": {"onnx_sha256": f"{i:064x}"}},
            "metrics": {"rows": 891, "accuracy": 0.82, "precision": 0.75, "recall": 0.56,
                        "f1": 0.64, "roc_auc": 0.86, "average_precision": 0.72,
                        "log_loss": 0.41, "brier": 0.13},
            "model": {"onnx_sha256": f"{i:064x}", "onnx_md5": f"{i:032x}",
                      "card_md5": f"{i + 1:032x}"},
            "data": {"raw_md5": "0" * 32}, "params_hash": "0" * 16}


def fast_import_stream(n_versions: int, n_assign: int) -> bytes:
    """A git fast-import stream: the commits, version tags and assignment tags."""
    out = bytearray()
    seq = 0
    for i in range(1, n_versions + 1):
        out += b"commit refs/heads/main\nmark :%d\n" % i
        out += f"committer {IDENT} {BASE_TIME + i} +0000\n".encode() + _data(f"model {i}")
        if i == 1:
            out += b"M 100644 inline params.yaml\n" + _data(f"artifact: {ART}\nseed: 42\n")
            # dvc.yaml and conf/config.yaml: what makes a directory a loopline repo
            out += b"M 100644 inline dvc.yaml\n" + _data("stages: {}\n")
            out += b"M 100644 inline conf/config.yaml\n" + _data("defaults: []\n")
        out += b"M 100644 inline dvc.lock\n" + _data(f"schema: '2.0'\n# model {i}\n")
    times = []
    for i in range(1, n_versions + 1):  # registrations, interleaved in time with assignments
        seq += 1
        times.append(("v", i, seq))
        if i <= n_assign:
            seq += 1
            times.append(("a", i, seq))
    counters = {"prod": 0, "staging": 0}
    for kind, i, s in times:
        if kind == "v":
            name, mark, msg = f"{ART}@{version_name(i)}", i, _version_meta(i, s, f":{i}")
        else:
            stage = "prod" if i % 5 < 3 else "staging"
            target = i if i % 10 != 0 else i - 1  # only gate-passed versions get assigned
            counters[stage] += 1
            name, mark = f"{ART}#{stage}#{counters[stage]}", target
            msg = {"loopline": 1, "seq": s, "event": "promote", "action": "promote",
                   "artifact": ART, "version": version_name(target), "stage": stage,
                   "forced": False, "reason": None, "who": IDENT,
                   "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(BASE_TIME + s))}
        out += f"tag {name}\nfrom :{mark}\ntagger {IDENT} {BASE_TIME + s} +0000\n".encode()
        out += _data(json.dumps(msg))
    return bytes(out)


def build_repo(root: Path, n_versions: int, n_assign: int) -> None:
    """Create the benchmark repository at ``root`` (one git fast-import run)."""
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True, env=ENV)
    subprocess.run(["git", "fast-import", "--quiet"], cwd=root, check=True, env=ENV,
                   input=fast_import_stream(n_versions, n_assign))
    subprocess.run(["git", "checkout", "-q", "main"], cwd=root, check=True, env=ENV)
    subprocess.run(["git", "pack-refs", "--all"], cwd=root, check=True, env=ENV)


def tags(root: Path) -> set[str]:
    """The tags and loopline's marker refs (a run that writes is undone by removing both)."""
    res = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/tags",
                          "refs/loopline"], cwd=root, capture_output=True, text=True, env=ENV)
    return set(res.stdout.split())


def timed(cmd: list[str], root: Path, repeat: int, restore: bool) -> tuple[float, str]:
    """Median wall time of ``cmd`` in ``root``; new tags are deleted after each run."""
    samples, last = [], ""
    for _ in range(repeat):
        before = tags(root) if restore else set()
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=ENV)
        samples.append(time.perf_counter() - t0)
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n"
                             f"{res.stdout}\n{res.stderr}")
        last = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
        if restore:
            new = sorted(tags(root) - before)
            if new:
                subprocess.run(["git", "update-ref", "--stdin"], cwd=root, capture_output=True,
                               env=ENV, input="".join(f"delete {r}\n" for r in new).encode())
    return statistics.median(samples), last


def find_gto(arg: str | None) -> str | None:
    if arg:
        return arg
    here = Path(sys.executable).parent / "gto"
    return str(here) if here.exists() else shutil.which("gto")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--versions", type=int, default=1000)
    ap.add_argument("--assignments", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=7, help="runs per loopline command")
    ap.add_argument("--gto-repeat", type=int, default=1, help="runs per gto command (slow)")
    ap.add_argument("--gto", help="the gto executable (default: next to python, else PATH)")
    ap.add_argument("--no-gto", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temp repo and print its path")
    ap.add_argument("--no-bytecode", action="store_true",
                    help="keep PYTHONDONTWRITEBYTECODE: compile loopline's sources on every run")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="loopline-registry-bench-"))
    if not args.no_bytecode:  # as installed: bytecode cached (in a private dir, not in src/)
        ENV.pop("PYTHONDONTWRITEBYTECODE", None)
        ENV["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    root = tmp / "repo"
    t0 = time.perf_counter()
    build_repo(root, args.versions, args.assignments)
    shim = tmp / "loopline_entry.py"
    shim.write_text(SHIM)
    ll = [sys.executable, str(shim)]
    print(f"repo: {args.versions} versions, {len(tags(root)) - args.versions} assignments, "
          f"built in {time.perf_counter() - t0:.2f} s ({root})")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu, load {os.getloadavg()[0]:.2f}, "
          f"bytecode {'compiled on every run' if args.no_bytecode else 'cached'}")

    which_v = timed([*ll, "which", "prod"], root, 1, False)[1]
    staging_v = timed([*ll, "which", "staging"], root, 1, False)[1]
    target = next(version_name(i) for i in range(args.versions // 2, 0, -1)
                  if i % 10 and version_name(i) != staging_v)
    prev = json.loads(subprocess.run([*ll, "rollback", "--stage", "prod", "--json"], cwd=root,
                                     capture_output=True, text=True, env=ENV).stdout)
    undo = f"delete refs/tags/{prev['tag']}\ndelete refs/loopline/assigned/{ART}/prod/{prev['n']}\n"
    subprocess.run(["git", "update-ref", "--stdin"], cwd=root, capture_output=True, env=ENV,
                   input=undo.encode())
    print(f"prod is {which_v}, staging is {staging_v}; promote {target} to staging; "
          f"rollback prod would go to {prev['version']}\n")

    ops = [
        ("which prod", [*ll, "which", "prod"], ["show", f"{ART}#prod"], False),
        ("promote staging", [*ll, "promote", target, "--to", "staging"],
         ["assign", ART, "--version", target, "--stage", "staging", "--force"], True),
        ("rollback prod", [*ll, "rollback", "--stage", "prod"],
         ["assign", ART, "--version", prev["version"], "--stage", "prod", "--force"], True),
        ("which (gto show)", [*ll, "which", "prod"], ["show"], False),
        ("history", [*ll, "history", "--json"], ["history", ART], False),
    ]
    gto = None if args.no_gto else find_gto(args.gto)
    print(f"{'operation':<17} {'loopline':>9} {'gto':>10} {'gto/loopline':>13}   loopline output")
    for label, ours, theirs, writes in ops:
        t_ours, out = timed(ours, root, args.repeat, writes)
        t_gto = timed([gto, *theirs], root, args.gto_repeat, writes)[0] if gto else None
        ratio = f"{t_gto / t_ours:12.1f}x" if t_gto else f"{'-':>13}"
        gto_s = f"{t_gto:9.3f}s" if t_gto else f"{'-':>10}"
        print(f"{label:<17} {t_ours:8.3f}s {gto_s} {ratio}   {out[:60]}")
    startup = timed([*ll, "--help"], root, args.repeat, False)[0]
    print(f"\n(loopline --help start-up alone: {startup:.3f} s; "
          "target for which/promote/rollback: < 0.3 s)")
    if args.keep:
        print(f"kept {root}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
