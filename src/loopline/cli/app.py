"""The ``loopline`` command line.

Heavy libraries (pandas, scikit-learn, dvc, hydra, onnxruntime) are imported inside the
commands that need them, so ``loopline --help`` is instant. User errors are one line on
stderr and a non-zero exit; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer

from loopline import __version__
from loopline.core.errors import LooplineError
from loopline.pipeline.runner import STAGES

app = typer.Typer(
    name="loopline",
    help="Declarative GitOps for the life of a tabular ML model: DVC stages + Hydra configs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"verbose": False}

Overrides = Annotated[Optional[list[str]], typer.Argument(
    help="Hydra overrides, e.g. model=rf search.n_iter=5 features.numeric_imputer=knn")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
RepoOpt = Annotated[Optional[Path], typer.Option("--repo", "-C", help="Repository (default: the current one).")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"loopline {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    # the stages that `loopline -v run` starts (in dvc's process or their own) inherit it
    if verbose:
        os.environ["LOOPLINE_VERBOSE"] = "1"
    _state["verbose"] = os.environ.get("LOOPLINE_VERBOSE") == "1"


def _root(repo: Path | None) -> Path:
    from loopline.core.layout import find_root

    return find_root(repo)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


@app.command()
def params(
    overrides: Overrides = None,
    check: Annotated[bool, typer.Option("--check", help="Fail if params.yaml differs from conf/.")] = False,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Compose conf/ (with overrides) into params.yaml, or --check that they agree."""
    from loopline.config.compose import compose_params

    root = _root(repo)
    res = compose_params(root, overrides or [], write=not check)
    if as_json:
        typer.echo(json.dumps({"path": str(res.path), "changed": res.changed,
                               "changed_keys": res.changed_keys, "check": check}))
    elif check:
        if res.changed:
            keys = ", ".join(res.changed_keys[:8]) + (" …" if len(res.changed_keys) > 8 else "")
            typer.echo(f"params.yaml does not match conf/: {keys or 'formatting differs'}", err=True)
        else:
            typer.echo("params.yaml matches conf/")
    elif res.changed:
        typer.echo(f"params.yaml updated ({len(res.changed_keys)} key(s) changed)")
    else:
        typer.echo("params.yaml is up to date")
    if check and res.changed:
        raise typer.Exit(1)


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(STAGES)}.")],
) -> None:
    """Run one pipeline stage (this is what dvc.yaml calls)."""
    from loopline.pipeline.runner import check_stage, run_stage, summary_line

    check_stage(name)  # before looking for the repository: the name is the first thing wrong
    typer.echo(summary_line(run_stage(name, _root(None))))
    # the stage's work is done and its outputs are written: spare the exiting interpreter a
    # last collection over every object sklearn, pandas and onnx left behind (~0.3 s a stage)
    import gc

    gc.freeze()


@app.command()
def run(
    overrides: Overrides = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Rerun every stage.")] = False,
    isolated: Annotated[bool, typer.Option(
        "--isolated", help="Run each stage in its own process, as a plain `dvc repro` does "
        "(by default loopline's stages run inside dvc's process, importing their libraries once).",
    )] = False,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Compose params, then `dvc repro` the pipeline with a progress display."""
    from loopline.pipeline.repro import run_pipeline

    root = _root(repo)
    err = _console(stderr=True)
    display: list[_StageDisplay] = []

    def started(names: list[str], changed: list[str]) -> None:
        if as_json:
            return
        display.append(_StageDisplay(err, names))
        if changed:
            err.print(f"params.yaml updated: {', '.join(changed[:6]) or 'created'}")

    try:
        outcome = run_pipeline(root, overrides or [], force=force, in_process=not isolated,
                               on_start=started,
                               on_event=lambda ev: display and display[0].update(ev))
    finally:
        if display:
            display[0].stop()
    result, metrics, gate_doc = outcome.repro, outcome.metrics, outcome.gate
    ran = any(ev.state in ("done", "failed") for ev in result.stages.values())
    if ran and not isolated and not result.in_process:
        err.print("note: this dvc's stage runner is not the one loopline knows, "
                  "so each stage ran as its own process (slower, same outputs)")
    if as_json:
        typer.echo(json.dumps({
            "ok": outcome.ok,
            "gate": None if gate_doc is None else {"verdict": gate_doc.get("verdict"),
                                                   "failed": gate_doc.get("failed", [])},
            "up_to_date": result.up_to_date, "seconds": round(result.seconds, 2),
            "failed_stage": result.failed_stage, "error": result.error or None,
            "stages_in_process": result.in_process,
            "stages": {k: {"state": v.state, "seconds": round(v.seconds, 2), "summary": v.summary}
                       for k, v in result.stages.items()},
            "metrics": metrics, "reports": outcome.report_paths()}, default=str))
    if not result.ok:
        if not as_json:
            where = f"stage {result.failed_stage!r}" if result.failed_stage else "dvc repro"
            err.print(f"[red]error:[/] {where} failed")
            for line in (result.error or "").splitlines():
                err.print(line, markup=False)
            if _state["verbose"]:
                err.print("\n".join(result.output[-40:]), markup=False)
        raise typer.Exit(1)
    if not as_json:
        out = _console()
        if result.up_to_date:
            out.print(f"Pipeline is up to date ({result.seconds:.1f} s), nothing to run.")
        else:
            out.print(f"Pipeline finished in {result.seconds:.1f} s.")
        _print_metrics(out, metrics)
        if gate_doc is not None:
            _print_gate(out, gate_doc)
        out.print("Reports: " + ", ".join(outcome.report_paths()))
    if outcome.gate_failed:
        raise typer.Exit(1)


def _print_gate(out, doc: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    verdict = doc.get("verdict", "?")
    color = "green" if verdict == "pass" else "red"
    champ = doc.get("champion") or {}
    title = f"gate: [{color}]{verdict.upper()}[/]" + (
        f" (champion {champ['version']})" if champ.get("version") else " (no champion yet: absolute checks only)")
    table = Table(title=title, show_header=True, header_style="bold")
    for col in ("check", "value", "bound", "result", "reason"):
        table.add_column(col, justify="right" if col in ("value", "bound") else "left")
    for c in doc.get("checks", []):
        value = "n/a" if c["value"] is None else f"{c['value']:.4g}"
        bound = "n/a" if c["threshold"] is None else f"{c['op']} {c['threshold']:.4g}"
        res = "[dim]skipped[/]" if c.get("skipped") else ("[green]pass[/]" if c["passed"] else "[red]FAIL[/]")
        table.add_row(escape(c["name"]), value, bound, res, escape(c["reason"]))
    out.print(table)


@app.command()
def gate(as_json: JsonOpt = False, repo: RepoOpt = None) -> None:
    """Resolve the champion, reproduce up to the gate, print its checks; exit 1 on FAIL.

    Uses params.yaml as it is (it does not recompose conf/), so it gates what the last
    `loopline run` or `dvc exp run` built.
    """
    from loopline.pipeline.repro import run_pipeline

    outcome = run_pipeline(_root(repo), targets=["gate"], recompose=False)
    result, doc = outcome.repro, outcome.gate
    if not result.ok:
        where = f"stage {result.failed_stage!r}" if result.failed_stage else "dvc repro"
        raise LooplineError(f"{where} failed before the gate could decide", details=result.error)
    if doc is None:
        raise LooplineError("the gate stage wrote no gate report")
    if as_json:
        typer.echo(json.dumps(doc))
    else:
        _print_gate(_console(), doc)
    if doc.get("verdict") != "pass":
        raise typer.Exit(1)


def _print_metrics(out, metrics: dict) -> None:
    if not metrics:
        return
    from rich.table import Table

    table = Table(title="held-out metrics", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    from loopline.core.names import METRICS

    for k in METRICS:
        if metrics.get(k) is not None:
            table.add_row(k, f"{metrics[k]:.4f}")
    out.print(table)


class _StageDisplay:
    """A live per-stage progress display on a terminal; plain lines elsewhere (CI logs)."""

    def __init__(self, console, names: list[str]) -> None:
        self.console = console
        self.names = names
        self.states: dict[str, str] = {}
        self.live = None
        if console.is_terminal:
            from rich.live import Live

            self.live = Live(self._render(), console=console, refresh_per_second=8, transient=False)
            self.live.start()

    def _render(self):
        from rich.spinner import Spinner
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        for i, name in enumerate(self.names, 1):
            state = self.states.get(name, "")
            mark = {"done": "[green]✓[/]", "skipped": "[dim]=[/]", "restored": "[cyan]↺[/]",
                    "failed": "[red]✗[/]"}.get(state)
            label = f"[{i}/{len(self.names)}] {name}"
            if state == "running":
                table.add_row(Spinner("dots"), label, "[yellow]running[/]")
            else:
                table.add_row(mark or " ", label, state or "[dim]waiting[/]")
        return table

    def update(self, ev) -> None:
        self.states[ev.stage] = ev.state
        if self.live is not None:
            self.live.update(self._render())
            return
        detail = f" ({ev.seconds:.1f} s)" if ev.state in ("done", "failed") else ""
        extra = ""
        if ev.summary:
            extra = " " + json.dumps({k: v for k, v in ev.summary.items() if k != "seconds"}, default=str)
        self.console.print(f"{ev.stage}: {ev.state}{detail}{extra}", markup=False)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


@app.command()
def metrics(as_json: JsonOpt = False, repo: RepoOpt = None) -> None:
    """Show the held-out metrics of the current workspace."""
    from loopline.config.params import load_params
    from loopline.core.files import json_or_none
    from loopline.core.layout import METRICS_JSON, Layout

    root = _root(repo)
    m = json_or_none(Layout.of(root, load_params(root).paths).report(METRICS_JSON))
    if not m:
        raise LooplineError("no metrics yet: run `loopline run` first")
    if as_json:
        typer.echo(json.dumps(m))
    else:
        _print_metrics(_console(), m)


@app.command()
def schema(
    data: Annotated[Path, typer.Argument(help="A CSV or Parquet file.")],
    target: Annotated[str, typer.Option("--target", "-t", help="The target column.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
) -> None:
    """Infer a schema (types, ranges, categories) from a data file, as conf/data YAML."""
    from loopline.config.infer import infer_schema, schema_yaml
    from loopline.pipeline.tabular import read_table

    df = read_table(data)
    text = schema_yaml(infer_schema(df, target))
    if output is None:
        typer.echo(text, nl=False)
    else:
        from loopline.core.files import write_text

        write_text(output, text)
        typer.echo(f"schema written to {output}", err=True)


from loopline.cli.gitops import add_commands as _add_gitops_commands  # noqa: E402
from loopline.cli.init import add_commands as _add_init_commands  # noqa: E402
from loopline.cli.monitoring import add_commands as _add_monitor_commands  # noqa: E402
from loopline.cli.registry import add_commands as _add_registry_commands  # noqa: E402
from loopline.cli.serving import add_commands as _add_serve_commands  # noqa: E402
from loopline.cli.simulate import add_commands as _add_simulate_commands  # noqa: E402

_add_registry_commands(app)
_add_serve_commands(app)
_add_gitops_commands(app)
_add_init_commands(app)
_add_monitor_commands(app)
_add_simulate_commands(app)


def main() -> None:
    """Console-script entry point: run the app, turning LooplineError into one line."""
    try:
        app()
    except LooplineError as err:
        if _state["verbose"]:
            traceback.print_exc()
        print(f"error: {err.message}", file=sys.stderr)
        if err.details:
            print(err.details, file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
