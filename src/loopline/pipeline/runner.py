"""Running one pipeline stage: in its own process, or inside the ``dvc repro`` that asked.

Each stage of dvc.yaml has the command ``loopline stage NAME``. A plain ``dvc repro`` (a
data scientist's, or CI's) starts it as a new process, as DVC does for any command. Every
such process imports pandas and scikit-learn again, and skl2onnx or Evidently, which is
~0.8 s per stage on a laptop and most of what separates the pipeline from one script.

``loopline run`` drives the same ``dvc repro``: DVC still decides which stages are stale,
hashes their dependencies and outputs, restores from its run cache and writes dvc.lock. It
only runs the commands that are exactly ``loopline stage NAME`` inside DVC's own process
(:func:`install`), where those libraries stay imported from one stage to the next. The
stage functions are the same, they read the same params.yaml, and they write the same
files; any other command, or a stage of a user's own, still runs in a shell.
``loopline run --isolated`` turns this off. How DVC is made to do that lives in
:mod:`loopline.pipeline.dvc_internals`.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

STAGES = ("ingest", "validate", "prepare", "train", "evaluate", "export", "gate")
SUMMARY_PREFIX = "loopline-stage-summary: "
IN_PROCESS_MARK = "loopline: in dvc's process: stage "  # `loopline run` reports what it saw


#: Python's hash seed for every stage: Evidently builds parts of its HTML page by iterating
#: over sets of strings, so the page (hashed into dvc.lock) depends on the seed
HASH_SEED = "0"


def fixed_hash_seed() -> None:
    """Restart this process with :data:`HASH_SEED` unless it already runs with it.

    A stage started by a plain ``dvc repro`` is a new ``loopline stage NAME`` process with
    a random seed; re-executing it before anything is imported costs a few milliseconds.
    ``loopline run`` starts dvc with the seed set, so its in-process stages have it too.
    """
    if os.environ.get("PYTHONHASHSEED") == HASH_SEED:
        return
    os.environ["PYTHONHASHSEED"] = HASH_SEED
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


#: heavy modules of the stages after train (export: skl2onnx, onnxruntime; gate:
#: Evidently, ~4 s), imported while the search runs
LATER_IMPORTS = ("evidently", "evidently.presets", "skl2onnx", "onnxruntime")
_in_dvc_process = False  # set by run_in_process: the stages after this one run here too


def prefetch_later_imports() -> threading.Thread | None:
    """Import :data:`LATER_IMPORTS` in a background thread, when the later stages run here.

    Called by train once its own imports are done, just before the search: the search's
    workers are other processes and this one mostly waits, so the imports cost the gate
    nothing. A stage that needs a module the thread is still importing waits for it
    (Python's import lock); a failed import is left for that stage to raise. Run as its own
    process (``--isolated``, a plain ``dvc repro``) a stage prefetches nothing.
    """
    if not _in_dvc_process or os.environ.get("LOOPLINE_PREFETCH") == "0":
        return None

    def load() -> None:
        import importlib

        for module in LATER_IMPORTS:
            try:
                importlib.import_module(module)
            except Exception:  # noqa: BLE001 - the stage that imports it reports it
                return

    thread = threading.Thread(target=load, name="loopline-prefetch", daemon=True)
    thread.start()
    return thread


#: the stages before train: mostly one core's work, while the search's workers start
BEFORE_TRAIN = ("ingest", "validate", "prepare")
#: what the search's workers import to unpickle their first task (the estimator's module too)
SEARCH_IMPORTS = ("pandas", "sklearn.model_selection", "sklearn.metrics", "sklearn.pipeline",
                  "sklearn.compose", "sklearn.impute", "sklearn.preprocessing",
                  "loopline.model.features")
_search_pool: threading.Thread | None = None


def start_search_pool(params: Any) -> threading.Thread | None:
    """Start the search's worker processes in the background, for train to find them ready.

    Called when a stage before train runs in dvc's process (new data, so the search will
    most likely run): a worker process takes about a second to import scikit-learn and
    pandas, which a search otherwise pays at its start, on every core at once. Started here,
    the workers import on the core that ingest, validate and prepare leave idle (measured on
    2 cores, 150 rows: the search 4.2 → 2.9 s, the whole run 7.9 → 7.3 s). It is joblib's
    own pool (loky's reusable executor), started by a joblib call with the search's backend
    and ``n_jobs``, so the search's call gets the same pool instead of starting another.
    Nothing is started for a Dask search, ``n_jobs: 1``, fewer than two cores, in a stage
    process of its own, or with LOOPLINE_PREFETCH=0; if train does not run, the pool is
    stopped at the process's end like any idle loky pool.
    """
    global _search_pool
    search = params.search
    if (_search_pool is not None or not _in_dvc_process or search.backend != "local"
            or search.method == "none" or os.environ.get("LOOPLINE_PREFETCH") == "0"):
        return None
    import joblib

    workers = joblib.cpu_count() if search.n_jobs == -1 else search.n_jobs
    if workers < 2:
        return None
    modules = (*SEARCH_IMPORTS, str(params.model.estimator.get("_target_", "")).rpartition(".")[0])

    def start() -> None:
        try:
            with joblib.parallel_config(backend="loky"):
                joblib.Parallel(n_jobs=search.n_jobs)(
                    joblib.delayed(_import_in_worker)(modules) for _ in range(workers))
        except Exception:  # noqa: BLE001 - the search starts its own pool and reports errors
            pass

    _search_pool = threading.Thread(target=start, name="loopline-search-pool", daemon=True)
    _search_pool.start()
    return _search_pool


def search_pool_ready() -> None:
    """Wait until :func:`start_search_pool`'s workers have imported (train, before the search:
    two callers asking loky's pool for workers at once would share them anyway)."""
    if _search_pool is not None:
        _search_pool.join()


def _import_in_worker(modules: tuple[str, ...]) -> int:
    """A search worker's first task: import ``modules``; a name that fails is skipped (the
    search reports its own errors)."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - see the docstring
            pass
    return os.getpid()


def check_stage(name: str) -> None:
    """A LooplineError (exit 2) unless ``name`` is a pipeline stage."""
    from loopline.core.errors import LooplineError

    if name not in STAGES:
        raise LooplineError(f"unknown stage {name!r}: expected one of {', '.join(STAGES)}",
                            exit_code=2)


def run_stage(name: str, root: Path) -> dict:
    """Run stage ``name`` of the instance at ``root``; return its one-line summary."""
    import importlib

    from loopline.config.params import load_params

    check_stage(name)
    cfg = load_params(root)
    if name in BEFORE_TRAIN:
        start_search_pool(cfg)
    module = importlib.import_module(f"loopline.pipeline.stages.{name}")
    started = time.perf_counter()
    summary = module.run(cfg, root) or {}
    summary["seconds"] = round(time.perf_counter() - started, 2)
    if name == "train":
        release_search_workers()
    return summary


def release_search_workers() -> None:
    """Stop the pool of search workers that joblib keeps for reuse (loky's), in the background.

    The search is the only work of the pipeline that uses the pool. Left alone, its workers
    wait for more work until this process ends; the end then waits while each of them takes
    its own interpreter apart (scikit-learn and pandas loaded: ~0.3 s, on the cores the later
    stages need). They are idle now, their results are here and they hold nothing to write,
    so loky's manager thread kills them (SIGKILL) and cleans up after them while the later
    stages run. A later joblib call that needs a pool starts a new one.
    """
    loky = sys.modules.get("joblib.externals.loky.reusable_executor")
    # loky's module-level reusable pool: the public get_reusable_executor() would start one
    # (or resize this one) to return it, which is the opposite of what is wanted here
    executor = getattr(loky, "_executor", None) if loky is not None else None
    if executor is not None:
        executor.shutdown(wait=False, kill_workers=True)


def exit_now(code: int) -> NoReturn:
    """End this process with exit status ``code``, skipping the interpreter's teardown.

    For a process whose work is done and written: dvc's after ``dvc repro`` returned (it has
    written dvc.lock, closed its state database and released its lock by then), or a stage's
    after its outputs are written. A normal exit would next take every module apart (pandas,
    scikit-learn, Evidently, DVC: about half a second to a second on this kind of machine)
    for nothing. What a normal exit does that matters is done here, in its order: threading's
    exit hooks and the join of non-daemon threads (loky's and concurrent.futures' hooks stop
    their pools there), the atexit handlers (logging's flush and close, multiprocessing's
    finalizers, joblib's temporary folders), and the flush of stdout and stderr. Data written
    to files is in the kernel's hands already; closing a file descriptor adds nothing to it.
    """
    _flush_std()
    threading._shutdown()  # what Py_FinalizeEx calls first (CPython 3.11: wait_for_thread_shutdown)
    atexit._run_exitfuncs()
    _flush_std()
    os._exit(int(code) & 0xFF)  # the status sys.exit(code) gives on POSIX


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except (OSError, ValueError):  # the reader is gone: nobody is left to read it
            pass


def summary_line(summary: dict) -> str:
    """The line ``loopline run`` picks out of dvc's output for its stage table."""
    from loopline.core.files import dumps_json

    return SUMMARY_PREFIX + dumps_json(summary).replace("\n", " ").replace("  ", "")


def run_in_process(name: str, cwd: str, env: dict[str, str]) -> int:
    """Run a stage here as ``loopline stage NAME`` would run in a shell; return its exit code.

    The stage sees the working directory and the DVC_* variables that DVC gives a command;
    errors print as the command line prints them.
    """
    from loopline.core.errors import LooplineError
    from loopline.core.layout import find_root

    global _in_dvc_process
    _in_dvc_process = True
    added = {k: v for k, v in env.items() if k.startswith("DVC_") and os.environ.get(k) != v}
    saved_env = {k: os.environ.get(k) for k in added}
    saved_cwd = os.getcwd()
    os.environ.update(added)
    print(IN_PROCESS_MARK + name, flush=True)
    try:
        os.chdir(cwd)
        summary = run_stage(name, find_root(None))
        print(summary_line(summary), flush=True)
        return 0
    except LooplineError as err:
        if os.environ.get("LOOPLINE_VERBOSE") == "1":
            traceback.print_exc()
        print(f"error: {err.message}", file=sys.stderr, flush=True)
        if err.details:
            print(err.details, file=sys.stderr, flush=True)
        return err.exit_code
    except SystemExit as exc:  # what sys.exit in a stage process would have meant, not dvc's end
        if exc.code is None or isinstance(exc.code, int):
            return int(exc.code or 0)
        print(exc.code, file=sys.stderr, flush=True)
        return 1
    except Exception:  # a bug in a stage: the traceback, as a stage process would print it
        traceback.print_exc()
        return 1
    finally:
        os.chdir(saved_cwd)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        sys.stdout.flush()
        sys.stderr.flush()
