"""Drive ``dvc repro``: what ``loopline run`` does (:func:`run_pipeline`).

``dvc repro`` runs as a subprocess (it is the tool users run themselves, and the one CI
runs); loopline reads its output line by line to show which stage is running, skipped or
failed, and to collect each stage's one-line summary. The subprocess is started before
params.yaml is composed, so DVC's start-up overlaps loopline's own (see PendingRepro).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from loopline.core.dvc import dvc_env, load_yaml, read_lock
from loopline.core.errors import LooplineError
from loopline.core.files import json_or_none
from loopline.core.layout import (
    CARD_MD,
    DVC_YAML,
    EVALUATION_MD,
    GATE_HTML,
    GATE_JSON,
    GATE_MD,
    METRICS_JSON,
    MODEL_ONNX,
    PLOTS_DIR,
    VALIDATE_JSON,
    Layout,
)
from loopline.pipeline.dvc_internals import CACHED, FAILED, RUNNING, SKIPPED, UP_TO_DATE, WARM_DVC
from loopline.pipeline.runner import HASH_SEED, IN_PROCESS_MARK, SUMMARY_PREFIX


def stage_names(root: Path) -> list[str]:
    """Stage names of dvc.yaml in file order (which is the pipeline order)."""
    try:
        doc = load_yaml((root / DVC_YAML).read_text(encoding="utf-8"), DVC_YAML) or {}
    except OSError as err:
        raise LooplineError(f"cannot read {DVC_YAML}: {err.strerror}") from None
    return list((doc.get("stages") or {}).keys())


@dataclass
class StageEvent:
    stage: str
    state: str  # running | skipped | done | failed
    seconds: float = 0.0
    started: float = 0.0
    summary: dict = field(default_factory=dict)
    error: str = ""
    tail: list[str] = field(default_factory=list)  # last lines of a failed stage's output


#: the last line of a Python traceback: ``ValueError: ...``, ``skl2onnx.x.MissingShape: ...``
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Warning)\b(?::.*)?$")
#: how many lines of a failed stage's output ``loopline run`` shows
TAIL_LINES = 12


@dataclass
class ReproResult:
    ok: bool
    stages: dict[str, StageEvent]
    seconds: float
    up_to_date: bool
    output: list[str]
    failed_stage: str | None = None
    error: str = ""
    tail: list[str] = field(default_factory=list)  # last lines of the failed stage's output
    in_process: bool = False  # loopline's stages ran inside dvc's process (loopline.pipeline.runner)


def _finish(ev: StageEvent, on_event: Callable[[StageEvent], None] | None) -> None:
    ev.state = "done"
    ev.seconds = time.perf_counter() - ev.started
    if on_event:
        on_event(ev)


class PendingRepro:
    """``dvc repro`` started ahead of time; :meth:`run` lets it go and reports stage events.

    Use as a context manager around the work that must come first (params.yaml, the
    champion file): leaving the block without :meth:`run` stops the waiting process.
    """

    def __init__(self, root: Path, *, targets: list[str] | None = None,
                 force: bool = False, in_process: bool = True) -> None:
        self.root, self.targets, self.force = root, targets, force
        cmd = [sys.executable, "-c", WARM_DVC, "repro", *(targets or [])]
        if force:
            cmd.append("--force")
        env = dvc_env()
        # `loopline stage NAME` commands run inside that dvc process (loopline.pipeline.runner)
        env["LOOPLINE_STAGES_IN_PROCESS"] = "1" if in_process else "0"
        env["PYTHONHASHSEED"] = HASH_SEED  # the same bytes on every run (see runner)
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
            if line == UP_TO_DATE:
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


def must_run(root: Path, targets: list[str] | None, changed_params: list[str]) -> bool:
    """True when ``dvc repro`` will surely run a stage, so asking ``dvc status`` first is waste.

    Only the whole pipeline is judged (with targets: False, let DVC decide): a stage of
    dvc.yaml missing from dvc.lock, or a changed param key at or under one a stage declares.
    """
    if targets:
        return False
    try:
        stages = load_yaml((root / DVC_YAML).read_text(encoding="utf-8"), DVC_YAML)["stages"]
        locked = read_lock(root)
    except (OSError, LooplineError, KeyError, TypeError, AttributeError):
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
        tail=failed.tail if failed else [],
    )


class _Tracker:
    """Turns dvc's output lines into stage events."""

    def __init__(self, on_event: Callable[[StageEvent], None] | None) -> None:
        self.on_event = on_event
        self.stages: dict[str, StageEvent] = {}
        self.lines: list[str] = []
        self.error_lines: list[str] = []
        self.stage_lines: list[str] = []  # the current stage's output
        self.current: StageEvent | None = None

    def _emit(self, ev: StageEvent) -> None:
        if self.on_event:
            self.on_event(ev)

    def feed(self, line: str) -> None:
        import json

        self.lines.append(line)
        if m := RUNNING.match(line):
            self.close()
            self.stage_lines = []
            self.current = StageEvent(m.group(1), "running", started=time.perf_counter())
            self.stages[self.current.stage] = self.current
            self._emit(self.current)
        elif (m := SKIPPED.match(line)) or (m := CACHED.match(line)):
            ev = StageEvent(m.group(1), "skipped" if SKIPPED.match(line) else "restored")
            self.stages[ev.stage] = ev
            self._emit(ev)
        elif line.startswith(SUMMARY_PREFIX) and self.current is not None:
            try:
                self.current.summary = json.loads(line[len(SUMMARY_PREFIX):])
            except ValueError:
                pass
        elif line.startswith(("error: ", "  - ", "  row ")):
            self.error_lines.append(line)
            self.stage_lines.append(line)
        elif m := FAILED.match(line):
            name = m.group(1)
            ev = self.stages.get(name) or StageEvent(name, "running", started=time.perf_counter())
            ev.state, ev.error = "failed", "\n".join(self.error_lines) or self._cause() or line
            ev.tail = [ln for ln in self.stage_lines if not ln.startswith(IN_PROCESS_MARK)][-TAIL_LINES:]
            ev.seconds = time.perf_counter() - ev.started
            self.stages[name] = ev
            self._emit(ev)

        else:
            self.stage_lines.append(line)

    def _cause(self) -> str:
        """``error: <type>: <message>`` of an exception the stage died of (its traceback's
        last line), or ""."""
        for ln in reversed(self.stage_lines):
            if EXCEPTION_LINE.match(ln.strip()):
                return f"error: {ln.strip()}"
        return ""

    def close(self) -> None:
        if self.current and self.current.state == "running":
            _finish(self.current, self.on_event)


# ------------------------------------------------------------------ the whole run


@dataclass
class PipelineRun:
    """What one ``loopline run`` did: the repro, what params changed, metrics and gate."""

    repro: ReproResult
    changed_params: list[str]
    metrics: dict
    gate: dict | None  # reports/gate.json when the repro succeeded
    layout: Layout

    @property
    def ok(self) -> bool:
        """The pipeline ran and the gate (if it decided) passed."""
        return self.repro.ok and (self.gate is None or self.gate.get("verdict") == "pass")

    @property
    def gate_failed(self) -> bool:
        return self.gate is not None and self.gate.get("verdict") != "pass"

    def report_paths(self) -> list[str]:
        """The reports and model files that exist, for the closing summary."""
        lay = self.layout
        cands = [lay.report(EVALUATION_MD), lay.report(GATE_MD), lay.report(GATE_HTML),
                 lay.report(METRICS_JSON), lay.report(VALIDATE_JSON), lay.model(CARD_MD),
                 lay.model(MODEL_ONNX), lay.report(PLOTS_DIR)]
        return [lay.rel(c) + ("/" if c.is_dir() else "") for c in cands if c.exists()]

    def error_line(self) -> str:
        """One line saying where the run stopped and why ("" when it succeeded)."""
        r = self.repro
        if r.ok and not self.gate_failed:
            return ""
        if r.ok:
            return "gate failed: " + ", ".join(self.gate.get("failed", []))  # type: ignore[union-attr]
        where = f"stage {r.failed_stage!r}" if r.failed_stage else "dvc repro"
        last = (r.error or "").strip().splitlines()
        return f"{where} failed" + (f": {last[-1]}" if last else "")


def run_pipeline(root: Path, overrides: list[str] | tuple[str, ...] = (), *, force: bool = False,
                 in_process: bool = True, targets: list[str] | None = None,
                 recompose: bool = True,
                 on_start: Callable[[list[str], list[str]], None] | None = None,
                 on_event: Callable[[StageEvent], None] | None = None) -> PipelineRun:
    """Compose params.yaml, resolve the champion, ``dvc repro``; report metrics and the gate.

    This is ``loopline run`` without the display: the CLI, the monitor's retraining and the
    simulation call it. ``dvc repro`` starts importing at once, on the other core, and
    reproduces once params.yaml and the champion file are ready.

    Args:
        root: The instance.
        overrides: Hydra overrides for the composition.
        force: Rerun every stage.
        in_process: Run ``loopline stage`` commands inside dvc's process.
        targets: Reproduce only up to these stages (e.g. ``["gate"]``).
        recompose: Compose conf/ into params.yaml first (``loopline gate`` uses it as it is).
        on_start: Called with (stage names, changed params keys) before dvc starts.
        on_event: Called with every stage event.

    Raises:
        LooplineError: conf/ does not compose or validate, or the registry cannot be read.
    """
    from loopline.config.compose import compose_params
    from loopline.config.params import load_params
    from loopline.registry.champion import refresh_champion

    with PendingRepro(root, targets=targets, force=force, in_process=in_process) as pending:
        changed = compose_params(root, list(overrides)).changed_keys if recompose else []
        params = load_params(root)
        refresh_champion(root, params.paths.reports, params.gate.champion.stage)
        if on_start:
            on_start(stage_names(root), changed)
        result = pending.run(on_event, changed_params=changed)
    layout = Layout.of(root, params.paths)
    metrics = json_or_none(layout.report(METRICS_JSON)) or {}
    gate = json_or_none(layout.report(GATE_JSON)) if result.ok else None
    return PipelineRun(result, changed, metrics if isinstance(metrics, dict) else {},
                       gate if isinstance(gate, dict) else None, layout)
