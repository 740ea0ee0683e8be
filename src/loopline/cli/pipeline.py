"""Pipeline commands of the ``loopline`` CLI: params, stage, run, gate, metrics, schema.

``add_commands(app)`` adds them to the Typer app. Like every command module this one
imports only typer at import time; Hydra, DVC, pandas and scikit-learn are imported by the
domain functions a command calls (:mod:`loopline.config.compose`,
:mod:`loopline.pipeline.repro`, :mod:`loopline.pipeline.runner`, :mod:`loopline.pipeline.schema`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopline.cli.options import Command, JsonOpt, Overrides, RepoOpt, verbose
from loopline.cli.tables import StageDisplay, console, print_gate, print_json, print_metrics
from loopline.core.errors import LooplineError
from loopline.pipeline.runner import STAGES


def _root(repo: Path | None) -> Path:
    from loopline.core.layout import find_root

    return find_root(repo)


def params(
    overrides: Overrides = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Fail if params.yaml differs from conf/.")] = False,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Compose conf/ (with overrides) into params.yaml, or --check that they agree."""
    from loopline.config.compose import compose_params

    res = compose_params(_root(repo), overrides or [], write=not check)
    if as_json:
        print_json({"path": str(res.path), "changed": res.changed,
                    "changed_keys": res.changed_keys, "check": check})
    elif check:
        if res.changed:
            keys = ", ".join(res.changed_keys[:8]) + (" …" if len(res.changed_keys) > 8 else "")
            typer.echo(f"params.yaml does not match conf/: {keys or 'formatting differs'}",
                       err=True)
        else:
            typer.echo("params.yaml matches conf/")
    elif res.changed:
        typer.echo(f"params.yaml updated ({len(res.changed_keys)} key(s) changed)")
    else:
        typer.echo("params.yaml is up to date")
    if check and res.changed:
        raise typer.Exit(1)


def stage(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(STAGES)}.")],
) -> None:
    """Run one pipeline stage (this is what dvc.yaml calls)."""
    from loopline.pipeline.runner import check_stage, exit_now, fixed_hash_seed, run_stage, summary_line

    check_stage(name)  # before looking for the repository: the name is the first thing wrong
    fixed_hash_seed()  # the same output bytes on every run (may restart this process)
    typer.echo(summary_line(run_stage(name, _root(None))))
    # the stage's work is done and its outputs are written: spare this process the
    # interpreter's teardown of sklearn, pandas, onnx and Evidently (~0.5 s a stage)
    exit_now(0)


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
    err = console(stderr=True)
    display: list[StageDisplay] = []

    def started(names: list[str], changed: list[str]) -> None:
        if as_json:
            return
        display.append(StageDisplay(err, names))
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
        print_json({
            "ok": outcome.ok,
            "gate": None if gate_doc is None else {"verdict": gate_doc.get("verdict"),
                                                   "failed": gate_doc.get("failed", [])},
            "up_to_date": result.up_to_date, "seconds": round(result.seconds, 2),
            "failed_stage": result.failed_stage, "error": result.error or None,
            "output_tail": result.tail,
            "stages_in_process": result.in_process,
            "stages": {k: {"state": v.state, "seconds": round(v.seconds, 2), "summary": v.summary}
                       for k, v in result.stages.items()},
            "metrics": metrics, "reports": outcome.report_paths()})
    if not result.ok:
        if not as_json:
            where = f"stage {result.failed_stage!r}" if result.failed_stage else "dvc repro"
            lines = (result.error or "").splitlines()
            cause = lines[0].removeprefix("error: ") if lines else ""
            err.print(f"[red]error:[/] {where} failed" + (f": {cause}" if cause else ""),
                      markup=True, highlight=False, soft_wrap=True)
            for line in lines[1:]:
                err.print(line, markup=False, highlight=False, soft_wrap=True)
            if result.tail and not verbose():
                err.print(f"the last lines {where} printed:", highlight=False)
                for line in result.tail:
                    err.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
            if verbose():
                err.print("\n".join(result.output[-40:]), markup=False)
        raise typer.Exit(1)
    if not as_json:
        out = console()
        if result.up_to_date:
            out.print(f"Pipeline is up to date ({result.seconds:.1f} s), nothing to run.")
        else:
            out.print(f"Pipeline finished in {result.seconds:.1f} s.")
        print_metrics(out, metrics)
        if gate_doc is not None:
            print_gate(out, gate_doc)
        out.print("Reports: " + ", ".join(outcome.report_paths()))
    if outcome.gate_failed:
        raise typer.Exit(1)


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
        print_json(doc)
    else:
        print_gate(console(), doc)
    if doc.get("verdict") != "pass":
        raise typer.Exit(1)


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
        print_json(m)
    else:
        print_metrics(console(), m)


def schema(
    data: Annotated[Path, typer.Argument(help="A CSV or Parquet file.")],
    target: Annotated[str, typer.Option("--target", "-t", help="The target column.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write here instead of stdout.")] = None,
) -> None:
    """Infer a schema (types, ranges, categories) from a data file, as conf/data YAML."""
    from loopline.pipeline.schema import infer_file_schema, schema_yaml
    from loopline.pipeline.tabular import read_table

    text = schema_yaml(infer_file_schema(read_table(data), target, data))
    if output is None:
        typer.echo(text, nl=False)
    else:
        from loopline.core.files import write_text

        write_text(output, text)
        typer.echo(f"schema written to {output}", err=True)


COMMANDS = {"params": params, "stage": stage, "run": run, "gate": gate, "metrics": metrics,
            "schema": schema}


def add_commands(app: typer.Typer) -> None:
    """Add the pipeline commands to ``app`` (the ``loopline`` Typer app)."""
    for name, fn in COMMANDS.items():
        app.command(name, cls=Command)(fn)
