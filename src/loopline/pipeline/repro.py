"""Compose params and drive ``dvc repro``: what ``loopline params`` and ``loopline run`` do.

``dvc repro`` runs as a subprocess (it is the tool users run themselves, and the one CI
runs); loopline reads its output line by line to show which stage is running, skipped or
failed, and to collect each stage's one-line summary. The subprocess is started before
params.yaml is composed, so DVC's start-up overlaps loopline's own (see PendingRepro).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from loopline.config.schema import (
    PARAMS_FILE,
    check_estimator,
    compose,
    diff_keys,
    parse_yaml,
    validate_params,
)
from loopline.core.errors import LooplineError
from loopline.pipeline.runner import IN_PROCESS_MARK, SUMMARY_PREFIX


@dataclass
class ParamsResult:
    path: Path
    changed: bool
    changed_keys: list[str]
    text: str


_CACHE = Path(".dvc") / "tmp" / "loopline-params.json"


def _fingerprint(root: Path, overrides: list[str]) -> str:
    """A hash of everything composition reads: conf/ files, overrides, loopline version."""
    import hashlib

    from loopline import __version__

    h = hashlib.sha256(f"{__version__}\0{chr(0).join(overrides)}\0".encode())
    for path in sorted((root / "conf").rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _params_sha(path: Path) -> str | None:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def compose_params(root: Path, overrides: list[str], *, write: bool = True,
                   full_check: bool = True) -> ParamsResult:
    """Compose conf/ (+ overrides), validate it, and write params.yaml when it changed.

    Composition is skipped when neither conf/, the overrides nor params.yaml changed since
    the last successful run (a fingerprint in .dvc/tmp), which keeps a no-op run fast.
    """
    import json

    path = root / PARAMS_FILE
    cache = root / _CACHE
    fingerprint = _fingerprint(root, overrides)
    if cache.parent.is_dir() and cache.is_file():
        try:
            seen = json.loads(cache.read_text(encoding="utf-8"))
        except ValueError:
            seen = {}
        if seen.get("fingerprint") == fingerprint and seen.get("params_sha") == _params_sha(path):
            return ParamsResult(path, False, [], path.read_text(encoding="utf-8"))
    result = _compose_params(root, overrides, write=write, full_check=full_check)
    if cache.parent.is_dir() and (write or not result.changed):
        from loopline.core.files import write_text

        write_text(cache, json.dumps({"fingerprint": fingerprint, "params_sha": _params_sha(path)}))
    return result


def _compose_params(root: Path, overrides: list[str], *, write: bool,
                    full_check: bool) -> ParamsResult:
    text = compose(root, overrides)
    data = parse_yaml(text, "the composed config")
    params = validate_params(data, f"conf/ (composed{' with ' + ' '.join(overrides) if overrides else ''})")
    path = root / PARAMS_FILE
    old_text = path.read_text(encoding="utf-8") if path.is_file() else None
    changed = old_text != text
    if changed and full_check:
        check_estimator(params.model)
    keys: list[str] = []
    if changed:
        old = yaml.safe_load(old_text) if old_text else {}
        keys = diff_keys(old if isinstance(old, dict) else {}, data)
        if write:
            from loopline.core.files import write_text

            write_text(path, text)
    return ParamsResult(path, changed, keys, text)


def stage_names(root: Path) -> list[str]:
    """Stage names of dvc.yaml in file order (which is the pipeline order)."""
    try:
        doc = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise LooplineError(f"dvc.yaml is not valid YAML: {str(err).splitlines()[0]}") from None
    return list((doc.get("stages") or {}).keys())


@dataclass
class StageEvent:
    stage: str
    state: str  # running | skipped | done | failed
    seconds: float = 0.0
    started: float = 0.0
    summary: dict = field(default_factory=dict)
    error: str = ""


@dataclass
class ReproResult:
    ok: bool
    stages: dict[str, StageEvent]
    seconds: float
    up_to_date: bool
    output: list[str]
    failed_stage: str | None = None
    error: str = ""
    in_process: bool = False  # loopline's stages ran inside dvc's process (loopline.pipeline.runner)


def _finish(ev: StageEvent, on_event: Callable[[StageEvent], None] | None) -> None:
    ev.state = "done"
    ev.seconds = time.perf_counter() - ev.started
    if on_event:
        on_event(ev)


_RUNNING = re.compile(r"^Running stage '([^']+)'")
_SKIPPED = re.compile(r"^Stage '([^']+)' didn't change, skipping")
_CACHED = re.compile(r"^Stage '([^']+)' is cached - skipping run, checking out outputs")
_FAILED = re.compile(r"^ERROR: failed to reproduce '([^']+)'")


def dvc_env() -> dict[str, str]:
    """Environment for dvc: the venv's bin first (stage commands call ``loopline``)."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


# `dvc repro` through DVC's own entry point (dvc.cli.main), in a process started before it
# is needed: it imports DVC (~0.3 s) on the other core while loopline composes params.yaml
# and resolves the champion, then reads one order on stdin: "repro", "check" (`dvc status`
# first, and repro only if it finds a change), or nothing at all when the caller failed or
# was killed, in which case it exits having touched nothing.
_UP_TO_DATE = "loopline: pipeline up to date"
_WARM_DVC = f"""\
import gc, os, sys
from dvc.cli import main, parse_args
import dvc.repo.reproduce, dvc.repo.index, dvc.stage.cache, dvc.dependency.param  # needed next
parse_args(sys.argv[1:])
if os.environ.get("LOOPLINE_STAGES_IN_PROCESS") == "1":
    from loopline.pipeline.runner import install
    install()
gc.freeze()  # DVC's modules live as long as the process: keep the collector off them
order = sys.stdin.readline().strip()
if order == "check" and main(["status", "--quiet", "--with-deps", *sys.argv[2:]]) == 0:
    print({_UP_TO_DATE!r})
    sys.exit(0)
sys.exit(main(sys.argv[1:]) if order else 130)
"""


class PendingRepro:
    """``dvc repro`` started ahead of time; :meth:`run` lets it go and reports stage events.

    Use as a context manager around the work that must come first (params.yaml, the
    champion file): leaving the block without :meth:`run` stops the waiting process.
    """

    def __init__(self, root: Path, *, targets: list[str] | None = None,
                 force: bool = False, in_process: bool = True) -> None:
        self.root, self.targets, self.force = root, targets, force
        cmd = [sys.executable, "-c", _WARM_DVC, "repro", *(targets or [])]
        if force:
            cmd.append("--force")
        env = dvc_env()
        # `loopline stage NAME` commands run inside that dvc process (loopline.pipeline.runner)
        env["LOOPLINE_STAGES_IN_PROCESS"] = "1" if in_process else "0"
        try:
            self._proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True, bufsize=1)
        except OSError as err:
            raise LooplineError(f"cannot start dvc: {err}") from None
        self._let_go = False

    def __enter__(self) -> PendingRepro:
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self._proc
        if not self._let_go:  # still waiting for its order: nothing ran, stop it
            proc.kill()
            proc.wait()
        elif proc.poll() is None:
            # left while dvc runs (an error here, or Ctrl-C, which reached dvc too: same
            # process group): let it finish or stop, reading its output so it never blocks
            if proc.stdin and not proc.stdin.closed:
                proc.stdin.close()
            proc.stdin = None
            try:
                proc.communicate(timeout=60)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream and not stream.closed:
                stream.close()

    def run(self, on_event: Callable[[StageEvent], None] | None = None,
            changed_params: list[str] | None = None) -> ReproResult:
        """Let ``dvc repro`` go and report stage events as its output comes.

        ``dvc status`` is asked first, so an up-to-date pipeline costs one status and no
        repro, unless some stage must run anyway (``--force``, or :func:`must_run` with
        ``changed_params``, the dotted keys of params.yaml that this run changed).
        """
        started = time.perf_counter()
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        certain = self.force or must_run(self.root, self.targets, changed_params or [])
        self._let_go = True
        try:
            proc.stdin.write("repro\n" if certain else "check\n")
            proc.stdin.close()
        except OSError:  # it died while importing: its output says why
            pass
        tracker = _Tracker(on_event)
        up_to_date = in_process = False
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            if line == _UP_TO_DATE:
                up_to_date = True
            elif line.startswith(IN_PROCESS_MARK):
                in_process = True
            else:
                tracker.feed(line)
        code = proc.wait()
        tracker.close()
        if up_to_date and code == 0:
            stages = {name: StageEvent(name, "skipped") for name in stage_names(self.root)}
            for ev in stages.values():
                if on_event:
                    on_event(ev)
            return ReproResult(True, stages, time.perf_counter() - started, True, [])
        result = _result(tracker, code, time.perf_counter() - started)
        result.in_process = in_process
        return result


def repro(root: Path, *, targets: list[str] | None = None, force: bool = False,
          on_event: Callable[[StageEvent], None] | None = None,
          in_process: bool = True) -> ReproResult:
    """Run ``dvc repro`` and report stage events as they happen."""
    with PendingRepro(root, targets=targets, force=force, in_process=in_process) as pending:
        return pending.run(on_event)


# libyaml where PyYAML has it: dvc.lock grows with the pipeline
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def must_run(root: Path, targets: list[str] | None, changed_params: list[str]) -> bool:
    """True when ``dvc repro`` will surely run a stage, so asking ``dvc status`` first is waste.

    Only the whole pipeline is judged (with targets: False, let DVC decide): a stage of
    dvc.yaml missing from dvc.lock, or a changed param key at or under one a stage declares.
    """
    if targets:
        return False
    try:
        stages = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
        lock_path = root / "dvc.lock"
        locked = (yaml.load(lock_path.read_text(encoding="utf-8"), Loader=_YAML_LOADER) or {}
                  ).get("stages", {}) if lock_path.is_file() else {}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return False
    if any(name not in locked for name in stages):
        return True
    declared = {p for st in stages.values() for p in (st.get("params") or []) if isinstance(p, str)}
    return any(k == d or k.startswith(d + ".") for k in changed_params for d in declared)


def _result(tracker: _Tracker, code: int, seconds: float) -> ReproResult:
    stages, lines, error_lines = tracker.stages, tracker.lines, tracker.error_lines
    failed = next((s for s in stages.values() if s.state == "failed"), None)
    if code != 0 and failed is None:
        err = next((ln for ln in reversed(lines) if ln.startswith("ERROR")),
                   f"dvc repro exited with {code}")
        return ReproResult(False, stages, seconds, False, lines, None,
                           "\n".join(error_lines) or err)
    return ReproResult(
        ok=code == 0,
        stages=stages,
        seconds=seconds,
        up_to_date=code == 0 and all(s.state == "skipped" for s in stages.values()),
        output=lines,
        failed_stage=failed.stage if failed else None,
        error=failed.error if failed else "",
    )


class _Tracker:
    """Turns dvc's output lines into stage events."""

    def __init__(self, on_event: Callable[[StageEvent], None] | None) -> None:
        self.on_event = on_event
        self.stages: dict[str, StageEvent] = {}
        self.lines: list[str] = []
        self.error_lines: list[str] = []
        self.current: StageEvent | None = None

    def _emit(self, ev: StageEvent) -> None:
        if self.on_event:
            self.on_event(ev)

    def feed(self, line: str) -> None:
        import json

        self.lines.append(line)
        if m := _RUNNING.match(line):
            self.close()
            self.current = StageEvent(m.group(1), "running", started=time.perf_counter())
            self.stages[self.current.stage] = self.current
            self._emit(self.current)
        elif (m := _SKIPPED.match(line)) or (m := _CACHED.match(line)):
            ev = StageEvent(m.group(1), "skipped" if _SKIPPED.match(line) else "restored")
            self.stages[ev.stage] = ev
            self._emit(ev)
        elif line.startswith(SUMMARY_PREFIX) and self.current is not None:
            try:
                self.current.summary = json.loads(line[len(SUMMARY_PREFIX):])
            except ValueError:
                pass
        elif line.startswith(("error: ", "  - ", "  row ")):
            self.error_lines.append(line)
        elif m := _FAILED.match(line):
            name = m.group(1)
            ev = self.stages.get(name) or StageEvent(name, "running", started=time.perf_counter())
            ev.state, ev.error = "failed", "\n".join(self.error_lines) or line
            ev.seconds = time.perf_counter() - ev.started
            self.stages[name] = ev
            self._emit(ev)

    def close(self) -> None:
        if self.current and self.current.state == "running":
            _finish(self.current, self.on_event)
