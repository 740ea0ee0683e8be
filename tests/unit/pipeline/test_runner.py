"""Stages run inside dvc's process (pipeline/runner.py): same output, same errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopline.core.errors import LooplineError
from loopline.pipeline import runner as stagerun


@pytest.fixture()
def stage_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.delenv("DVC_STAGE", raising=False)
    monkeypatch.delenv("LOOPLINE_VERBOSE", raising=False)
    return {"DVC_STAGE": "train", "DVC_ROOT": str(tmp_path), "PATH": os.environ["PATH"]}


def test_a_stage_in_process_prints_its_summary_and_sees_dvc_variables(
        tmp_path: Path, stage_env: dict, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    seen = {}

    def fake(name: str, root: Path) -> dict:
        seen.update(name=name, cwd=os.getcwd(), stage=os.environ.get("DVC_STAGE"))
        return {"rows": 3}

    monkeypatch.setattr(stagerun, "run_stage", fake)
    monkeypatch.setattr("loopline.core.layout.find_root", lambda _: tmp_path)
    before = os.getcwd()
    assert stagerun.run_in_process("train", str(tmp_path), stage_env) == 0
    assert seen == {"name": "train", "cwd": str(tmp_path), "stage": "train"}
    assert os.getcwd() == before and "DVC_STAGE" not in os.environ
    mark, summary = capsys.readouterr().out.splitlines()
    assert mark == stagerun.IN_PROCESS_MARK + "train"
    assert summary.startswith(stagerun.SUMMARY_PREFIX) and '"rows": 3' in summary


def test_a_user_error_in_process_is_one_line_and_its_exit_code(
        tmp_path: Path, stage_env: dict, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    def fake(name: str, root: Path) -> dict:
        raise LooplineError("column 'Age' [min]: 1 row below the minimum 18",
                            details="  row 3: 7", exit_code=2)

    monkeypatch.setattr(stagerun, "run_stage", fake)
    monkeypatch.setattr("loopline.core.layout.find_root", lambda _: tmp_path)
    assert stagerun.run_in_process("validate", str(tmp_path), stage_env) == 2
    err = capsys.readouterr().err
    assert err == "error: column 'Age' [min]: 1 row below the minimum 18\n  row 3: 7\n"
    assert "DVC_STAGE" not in os.environ


def test_a_bug_in_process_shows_its_traceback(
        tmp_path: Path, stage_env: dict, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    def fake(name: str, root: Path) -> dict:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(stagerun, "run_stage", fake)
    monkeypatch.setattr("loopline.core.layout.find_root", lambda _: tmp_path)
    before = os.getcwd()
    assert stagerun.run_in_process("train", str(tmp_path), stage_env) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: boom" in err
    assert os.getcwd() == before


def test_sys_exit_in_a_stage_is_its_exit_code_not_the_end_of_dvc(
        tmp_path: Path, stage_env: dict, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    codes = iter([3, "cannot go on", None, True])

    def fake(name: str, root: Path) -> dict:
        raise SystemExit(next(codes))

    monkeypatch.setattr(stagerun, "run_stage", fake)
    monkeypatch.setattr("loopline.core.layout.find_root", lambda _: tmp_path)
    assert stagerun.run_in_process("train", str(tmp_path), stage_env) == 3
    assert stagerun.run_in_process("train", str(tmp_path), stage_env) == 1
    assert capsys.readouterr().err == "cannot go on\n"
    assert stagerun.run_in_process("train", str(tmp_path), stage_env) == 0
    assert stagerun.run_in_process("train", str(tmp_path), stage_env) == 1  # sys.exit(True)


def test_later_imports_are_prefetched_only_when_the_stages_run_in_dvcs_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from loopline.pipeline import runner

    for name in ("wave", "loopline_no_such_module", "tomllib"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(runner, "LATER_IMPORTS", ("wave", "loopline_no_such_module", "tomllib"))
    monkeypatch.setattr(runner, "_in_dvc_process", False)
    assert runner.prefetch_later_imports() is None  # a stage process of its own: nothing
    monkeypatch.setattr(runner, "_in_dvc_process", True)
    thread = runner.prefetch_later_imports()
    assert thread is not None
    thread.join(timeout=60)
    assert "wave" in sys.modules  # imported in the background
    assert "tomllib" not in sys.modules  # a failed import stops the prefetch, silently
    monkeypatch.setenv("LOOPLINE_PREFETCH", "0")
    assert runner.prefetch_later_imports() is None


# ------------------------------------------------------------------ the end of the process

EXITING = r"""
import atexit, logging, pathlib, sys, threading, time
from loopline.pipeline.runner import exit_now

out, code = pathlib.Path(sys.argv[1]), int(sys.argv[2])
atexit.register(lambda: (out / "atexit").write_text("ran"))
# a handler that buffers: only logging's own atexit hook (shutdown) writes its record
buffered = open(out / "log", "w", buffering=1 << 20)
logging.getLogger("t").addHandler(logging.StreamHandler(buffered))
logging.getLogger("t").warning("logged")

def late():
    time.sleep(0.3)
    (out / "thread").write_text("done")

threading.Thread(target=late).start()  # not a daemon: a normal exit waits for it
sys.stdout.write("x" * 200_000)  # stdout is a pipe here, so this sits in its buffer
sys.stderr.write("to stderr")
exit_now(code)
"""


@pytest.mark.parametrize(("code", "status"), [(0, 0), (3, 3), (255, 255), (256, 0)])
def test_exit_now_ends_the_process_as_a_normal_exit_would(tmp_path: Path, code: int, status: int) -> None:
    """Exit status as sys.exit gives it; buffered output delivered; threads joined; atexit
    handlers run (logging's among them, which flushes a buffered handler)."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", EXITING, str(tmp_path), str(code)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == status, res.stderr
    assert res.stdout == "x" * 200_000 and res.stderr == "to stderr"
    assert (tmp_path / "thread").read_text() == "done"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "log").read_text() == "logged\n"


POOLED = r"""
import os, sys
from joblib import Parallel, delayed
from loopline.pipeline.runner import exit_now, release_search_workers

def where(i):
    print(f"worker {os.getpid()}", flush=True)  # workers write to the same stdout
    return os.getpid()

with __import__("joblib").parallel_config(backend="loky"):
    pids = set(Parallel(n_jobs=2)(delayed(where)(i) for i in range(8)))
release_search_workers()
print("pool", " ".join(map(str, sorted(pids))), flush=True)
exit_now(0)
"""


def test_the_search_pool_is_stopped_and_no_worker_outlives_the_process(tmp_path: Path) -> None:
    """The workers share the process's stdout: the reader sees its end only once every
    worker has exited (loky would otherwise keep an idle worker for 300 s)."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", POOLED], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    pids = res.stdout.splitlines()[-1].split()[1:]
    assert pids and all(f"worker {pid}" in res.stdout for pid in pids)
    assert not _unreleased(res.stderr)  # loky's resource tracker found everything released


def _unreleased(stderr: str) -> set[str]:
    """The names loky's resource tracker reports leaked, less those it then finds unlinked
    already: a worker killed after it registered a lock of the pool cannot unregister it,
    so the tracker may list a lock that the process released (FileNotFoundError on its
    unlink). What is still there at the end is a leak."""
    import re

    leaked = {name for found in re.findall(r"leaked \w+ objects to clean up at shutdown: (\{.*?\})",
                                           stderr)
              for name in re.findall(r"'([^']+)'", found)}
    gone = set(re.findall(r"resource_tracker: (\S+): FileNotFoundError", stderr))
    return leaked - gone


def test_a_lock_the_tracker_lists_but_finds_unlinked_is_not_a_leak() -> None:
    """What loky's tracker wrote in a run where a killed worker had registered a lock."""
    benign = ("UserWarning: resource_tracker: There appear to be 1 leaked semlock objects to "
              "clean up at shutdown: {'/loky-16237-btyxx7h8': 1}\n  warnings.warn(\n"
              "UserWarning: resource_tracker: /loky-16237-btyxx7h8: FileNotFoundError(2, "
              "'No such file or directory')\n")
    assert _unreleased(benign) == set()
    leak = benign.replace("resource_tracker: /loky-16237-btyxx7h8: FileNotFoundError", "")
    assert _unreleased(leak) == {"/loky-16237-btyxx7h8"}


def test_release_search_workers_stops_lokys_reusable_pool_and_a_new_one_can_start() -> None:
    """loky keeps its reusable pool in ``reusable_executor._executor`` (what the release
    reads): this fails when an upgrade moves it."""
    from joblib import Parallel, delayed, parallel_config
    from joblib.externals.loky import reusable_executor

    from loopline.pipeline.runner import release_search_workers

    with parallel_config(backend="loky"):
        assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]
    pool = reusable_executor._executor
    assert pool is not None and not pool._flags.shutdown
    release_search_workers()
    assert pool._flags.shutdown and pool._flags.kill_workers
    with parallel_config(backend="loky"):
        assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]
    assert reusable_executor._executor is not pool
    release_search_workers()


WARMED = r"""
import os
from types import SimpleNamespace

import numpy as np
from joblib import parallel_config
from joblib.externals.loky import reusable_executor
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

from loopline.pipeline import runner

params = SimpleNamespace(
    search=SimpleNamespace(backend="local", method="grid", n_jobs=2),
    model=SimpleNamespace(estimator={"_target_": "sklearn.linear_model.LogisticRegression"}))
runner._in_dvc_process = True
thread = runner.start_search_pool(params)
assert runner.start_search_pool(params) is None  # once per process
runner.search_pool_ready()
assert not thread.is_alive()
pool = reusable_executor._executor
warmed = set(pool._processes)

def where(estimator, X, y):
    return os.getpid()

X, y = np.random.default_rng(0).normal(size=(60, 3)), np.arange(60) % 2
with parallel_config(backend="loky"):
    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0, 10.0]}, cv=3, n_jobs=2,
                          scoring=where, refit=False).fit(X, y)
used = {int(v) for k, v in search.cv_results_.items() if k.startswith("split")
        for v in v}
print("same pool", reusable_executor._executor is pool, "warmed", sorted(warmed), "used", sorted(used))
assert reusable_executor._executor is pool and used <= warmed, (warmed, used)
runner.release_search_workers()
runner.exit_now(0)
"""


def test_the_search_runs_on_the_workers_that_the_stages_before_train_started() -> None:
    """The pool started by :func:`start_search_pool` is the one the search's joblib call
    gets (loky would replace a pool started with other settings): every CV fit runs in one
    of its warmed workers."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", WARMED], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "same pool True" in res.stdout


@pytest.mark.parametrize("change", ["own process", "dask", "one job", "no search", "prefetch off",
                                    "one core"])
def test_no_search_pool_is_started_where_no_local_parallel_search_follows(
        monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    from types import SimpleNamespace

    from loopline.pipeline import runner

    search = SimpleNamespace(backend="local", method="random", n_jobs=-1)
    params = SimpleNamespace(search=search, model=SimpleNamespace(estimator={"_target_": "x.Y"}))
    monkeypatch.setattr(runner, "_in_dvc_process", change != "own process")
    monkeypatch.setattr(runner, "_search_pool", None)
    monkeypatch.setattr("joblib.cpu_count", lambda: 1 if change == "one core" else 2)
    if change == "dask":
        search.backend = "dask"
    elif change == "one job":
        search.n_jobs = 1
    elif change == "no search":
        search.method = "none"
    elif change == "prefetch off":
        monkeypatch.setenv("LOOPLINE_PREFETCH", "0")
    assert runner.start_search_pool(params) is None
