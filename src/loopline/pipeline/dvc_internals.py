"""Everything that depends on DVC's internals, in one place, checked by a contract test.

``loopline run`` drives a real ``dvc repro`` and relies on three things DVC does not
promise as an API:

- the log lines DVC prints per stage (``Running stage 'x':`` and so on), which loopline
  reads to show progress and to collect each stage's summary;
- ``dvc.stage.run._run(executable, cmd, **kwargs)``, the function that runs one stage
  command in a shell, which loopline replaces in DVC's own process so that commands that
  are exactly ``loopline stage NAME`` run there (libraries imported once per run, not once
  per stage; see :mod:`loopline.pipeline.runner`);
- the modules imported ahead of time by the warm-up script below;
- ``dvc.dvcfile.modify_yaml``, through which DVC rewrites dvc.lock after every stage, and
  the parser and dumper it is made of (:func:`install_lockfile_writer`).

:func:`contract` checks all three against the installed DVC; ``tests/unit/pipeline/
test_dvc_internals.py`` fails loudly when an upgrade moves any of them, and pyproject.toml
bounds DVC to the versions checked. At run time a mismatch is never fatal: stages then run
as processes, as in a plain ``dvc repro``, and ``loopline run`` says so.
"""

from __future__ import annotations

import os
import re

from loopline.core.layout import DVC_LOCK

# DVC's log lines (dvc/stage/run.py, dvc/stage/__init__.py, dvc/stage/cache.py,
# dvc/repo/reproduce.py in DVC 3.x), as loopline reads them.
RUNNING = re.compile(r"^Running stage '([^']+)'")
SKIPPED = re.compile(r"^Stage '([^']+)' didn't change, skipping")
CACHED = re.compile(r"^Stage '([^']+)' is cached - skipping run, checking out outputs")
FAILED = re.compile(r"^ERROR: failed to reproduce '([^']+)'")

# The log templates in DVC's sources that the patterns above must match (module, text).
LOG_TEMPLATES = (
    ("dvc.stage.run", "Running stage '%s':"),
    ("dvc.stage", "Stage '%s' didn't change, skipping"),
    ("dvc.stage.cache", "Stage '%s' is cached - skipping run, checking out outputs"),
    ("dvc.repo.reproduce", "failed to reproduce{segment} {names}"),
)

# A stage command that may run inside DVC's process.
STAGE_COMMAND = re.compile(r"loopline stage (\w+)")

UP_TO_DATE = "loopline: pipeline up to date"

# `dvc repro` through DVC's own entry point (dvc.cli.main), in a process started before it
# is needed: it imports DVC (~0.3 s) on the other core while loopline composes params.yaml
# and resolves the champion, then reads one order on stdin: "repro", "check" (`dvc status`
# first, and repro only if it finds a change), or nothing at all when the caller failed or
# was killed, in which case it exits having touched nothing. It ends without the
# interpreter's teardown (runner.exit_now): when dvc's main returns, its command ran inside
# `with repo:` (dvc.cli.command.CmdBase.do_run), so dvc.lock is written, the state database
# closed and the repository lock released.
WARM_DVC = f"""\
import gc, os, sys
from dvc.cli import main, parse_args
import dvc.repo.reproduce, dvc.repo.index, dvc.stage.cache, dvc.dependency.param  # needed next
from loopline.pipeline.runner import exit_now
parse_args(sys.argv[1:])
from loopline.pipeline.dvc_internals import install, install_lockfile_writer
install_lockfile_writer()
if os.environ.get("LOOPLINE_STAGES_IN_PROCESS") == "1":
    install()
gc.freeze()  # DVC's modules live as long as the process: keep the collector off them
order = sys.stdin.readline().strip()
if order == "check" and main(["status", "--quiet", "--with-deps", *sys.argv[2:]]) == 0:
    print({UP_TO_DATE!r})
    exit_now(0)
exit_now(main(sys.argv[1:]) if order else 130)
"""


def install() -> bool:
    """Make this process's DVC run ``loopline stage NAME`` commands in-process.

    Returns False (and changes nothing) when DVC's runner is not the one this was written
    against; stages then run as processes, as in a plain ``dvc repro``.
    """
    try:
        from dvc.stage import run as dvc_run
        from dvc.stage.exceptions import StageCmdFailedError
    except ImportError:
        return False
    shell_run = getattr(dvc_run, "_run", None)
    if shell_run is None or getattr(shell_run, "loopline", False):
        return shell_run is not None

    def _run(executable, cmd, **kwargs):  # dvc.stage.run._run(executable, cmd, **kwargs)
        from loopline.pipeline.runner import run_in_process

        match = STAGE_COMMAND.fullmatch(cmd.strip()) if isinstance(cmd, str) else None
        if match is None or "cwd" not in kwargs or "env" not in kwargs:
            return shell_run(executable, cmd, **kwargs)
        code = run_in_process(match.group(1), kwargs["cwd"], kwargs["env"])
        if code != 0:
            raise StageCmdFailedError(cmd, code)
        return None

    _run.loopline = True  # type: ignore[attr-defined]
    dvc_run._run = _run
    return True


def install_lockfile_writer() -> bool:
    """Make this process's DVC read dvc.lock with its fast parser before rewriting it.

    After every stage DVC rewrites dvc.lock through ``modify_yaml``: it parses the file with
    ruamel's round-trip parser (pure Python, which keeps comments and styles for the dump),
    updates the stage's entry and dumps it all. On a lock file of a few dozen dependencies
    the round trip takes ~0.1 s a stage, several times the time of DVC's safe parser (C).
    dvc.lock is written by DVC alone, in one style, with no comments, so the safe parse
    gives the same dump, byte for byte (tests/unit/pipeline/test_dvc_internals.py checks it
    on real lock files). Other files (dvc.yaml, which a user may have commented) keep the
    round trip. Returns False (and changes nothing) when DVC's writer is not the one this
    was written against.
    """
    try:
        from dvc import dvcfile
        from dvc.utils.serialize import _common, _yaml
    except ImportError:
        return False
    round_trip = getattr(dvcfile, "modify_yaml", None)
    if round_trip is None or getattr(round_trip, "loopline", False):
        return round_trip is not None
    if not all(hasattr(m, n) for m, n in ((_common, "_modify_data"), (_yaml, "parse_yaml"), (_yaml, "_dump"))):
        return False

    def modify_yaml(path, fs=None):  # dvc.utils.serialize.modify_yaml(path, fs=None)
        if os.path.basename(os.fspath(path)) != DVC_LOCK:
            return round_trip(path, fs=fs)
        return _common._modify_data(path, _yaml.parse_yaml, _yaml._dump, fs=fs)

    modify_yaml.loopline = True  # type: ignore[attr-defined]
    dvcfile.modify_yaml = modify_yaml
    return True


def contract() -> list[str]:
    """What of the above the installed DVC does not provide ([] when all holds)."""
    import importlib
    import inspect

    problems = []
    for module, text in LOG_TEMPLATES:
        try:
            source = inspect.getsource(importlib.import_module(module))
        except (ImportError, OSError, TypeError) as err:
            problems.append(f"{module}: cannot read its source ({err})")
            continue
        if text not in source:
            problems.append(f"{module} no longer logs {text!r}")
    try:
        from dvc.stage import run as dvc_run
        from dvc.stage.exceptions import StageCmdFailedError  # noqa: F401
    except ImportError as err:
        return [*problems, f"dvc.stage.run: {err}"]
    shell_run = getattr(dvc_run, "_run", None)
    if shell_run is None:
        problems.append("dvc.stage.run._run is gone")
    else:
        params = list(inspect.signature(shell_run).parameters.values())
        shape = [(p.name, p.kind) for p in params]
        if shape != [("executable", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                     ("cmd", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                     ("kwargs", inspect.Parameter.VAR_KEYWORD)]:
            problems.append(f"dvc.stage.run._run has another signature: {shape}")
        if "_run(executable, cmd, **kwargs)" not in inspect.getsource(dvc_run.cmd_run):
            problems.append("dvc.stage.run.cmd_run no longer calls _run(executable, cmd, **kwargs)")
    prepare = getattr(dvc_run, "prepare_kwargs", None)
    if prepare is None or not all(k in inspect.getsource(prepare) for k in ('"cwd"', '"env"')):
        problems.append("dvc.stage.run.prepare_kwargs no longer passes cwd and env")
    for module in ("dvc.cli", "dvc.repo.reproduce", "dvc.repo.index", "dvc.stage.cache",
                   "dvc.dependency.param"):
        try:
            importlib.import_module(module)
        except ImportError as err:
            problems.append(f"{module}: {err}")
    from dvc.cli import main, parse_args  # noqa: F401  (the warm-up script's entry points)
    from dvc.cli.command import CmdBase
    from dvc.dvcfile import Lockfile
    from dvc.utils.serialize import _common, _yaml

    if "with modify_yaml(self.path, fs=self.repo.fs) as data:" not in inspect.getsource(Lockfile.dump_stages):
        problems.append("dvc.dvcfile.Lockfile.dump_stages no longer rewrites dvc.lock through modify_yaml")
    if "_modify_data(path, parse_yaml_for_update, _dump, fs=fs)" not in inspect.getsource(_yaml.modify_yaml):
        problems.append("dvc.utils.serialize.modify_yaml is no longer _modify_data(path, parse_yaml_for_update, "
                        "_dump, fs=fs)")
    if list(inspect.signature(_common._modify_data).parameters) != ["path", "parser", "dumper", "fs"]:
        problems.append("dvc.utils.serialize._common._modify_data has another signature")

    if "with self.repo:" not in inspect.getsource(CmdBase.do_run):
        problems.append("dvc.cli.command.CmdBase.do_run no longer runs its command inside `with self.repo:`")
    return problems
