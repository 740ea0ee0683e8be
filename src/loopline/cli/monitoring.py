"""``loopline monitor``: RAG status of the live model from the inference log (see
:mod:`loopline.monitoring.monitor`). Imports only typer at import time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from loopline.cli.registry import _Command
from loopline.core.errors import LooplineError

EXIT = {"GREEN": 0, "AMBER": 3, "RED": 4}  # 1 (error) and 2 (usage) keep their meaning


def monitor(
    window: Annotated[str | None, typer.Option("--window", help="Window length, e.g. 1h, 1d "
                                               "(default monitor.window).")] = None,
    windows: Annotated[int | None, typer.Option("--windows", help="How many windows.")] = None,
    until: Annotated[float | None, typer.Option("--until", help="End of the last window "
                                                "(Unix time; default now).")] = None,
    log: Annotated[Path | None, typer.Option("--log", help="Inference log (default "
                                             "serve.log.path).")] = None,
    html: Annotated[bool, typer.Option("--html/--no-html", help="Write the Evidently HTML "
                                       "report of the latest window.")] = True,
    act: Annotated[bool, typer.Option("--act", help="Act on the status: record the imputation of "
                                      "alarming features; on AMBER retrain on the labelled window "
                                      "(promote on a passed gate); on RED live performance roll "
                                      "prod back (and reload --service-url).")] = False,
    service_url: Annotated[str | None, typer.Option(
        "--service-url", help="The running service to reload after a rollback.")] = None,
    push: Annotated[str | None, typer.Option(
        "--push", metavar="REMOTE", help="Push a rollback's tag to REMOTE (as CI does).")] = None,
    retrain_pr: Annotated[bool, typer.Option(
        "--retrain-pr", help="Propose a passed retraining as a pull request (branch pushed to "
                             "--push REMOTE; GITHUB_TOKEN) instead of registering and promoting "
                             "it here: what CI does.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
    repo: Annotated[Path | None, typer.Option("--repo", "-C", help="Repository.")] = None,
) -> None:
    """Drift, missing data, prediction drift, performance, latency and error rate per window; RAG status and alerts.

    Exit status: 0 GREEN (or no data), 3 AMBER, 4 RED (1 and 2 stay errors).
    """
    from loopline.config.params import load_params
    from loopline.core.layout import find_root
    from loopline.monitoring.check import check

    root = find_root(repo)
    params = load_params(root)
    cfg = params.monitor.model_copy(update={k: v for k, v in (("window", window), ("windows", windows))
                                            if v is not None})
    cfg = type(cfg).model_validate(cfg.model_dump())  # re-check the overrides
    doc = check(root, params, cfg, log_path=Path(log or root / params.serve.log.path), until=until,
                html=html, act=act, service_url=service_url, push=push, retrain_pr=retrain_pr)
    if as_json:
        typer.echo(json.dumps(doc, default=str))
    else:
        _summary(doc)
    raise typer.Exit(EXIT[doc["status"]] if doc["status"] in EXIT else 0)


def _summary(doc: dict) -> None:
    from datetime import datetime, timezone

    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)
    colors = {"GREEN": "green", "AMBER": "yellow", "RED": "red"}
    table = Table(title=f"monitor: [{colors.get(doc['status'], 'dim')}]{doc['status']}[/] "
                        f"(windows of {doc['window']})")
    for col in ("window end (UTC)", "records", "labels", "roc_auc", "accuracy", "drift share",
                "worst missing", "p99 ms", "errors", "status"):
        table.add_column(col, justify="right" if col not in ("status",) else "left")
    for w in doc["windows"]:
        perf = w.get("performance") or {}
        miss = w.get("missing_rate") or {}
        end = datetime.fromtimestamp(w["end"], tz=timezone.utc).strftime("%Y-%m-%d %H:%M")

        def f(v, fmt="{:.3f}"):  # noqa: ANN001, ANN202
            return "–" if v is None else fmt.format(v)

        table.add_row(end, str(w.get("records", 0)), str(w.get("labels", 0)), f(perf.get("roc_auc")),
                      f(perf.get("accuracy")), f(w.get("drift_share"), "{:.0%}"),
                      f(max(miss.values()) if miss else None, "{:.0%}"),
                      f((w.get("latency_ms") or {}).get("p99"), "{:.2f}"),
                      f(w.get("error_rate"), "{:.1%}"),
                      f"[{colors.get(w['status'], 'dim')}]{w['status']}[/]")
    console.print(table)
    for r in doc["reasons"]:
        console.print(f"  {r}", markup=False)
    for a in doc.get("alerts") or []:
        state = "sent" if a["delivered"] else f"not sent ({a.get('error')})"
        console.print(f"  alert via {a['channel']}: {state}", markup=False)
    for a in doc.get("actions") or []:
        detail = {k: v for k, v in a.items() if k != "action"}
        console.print(f"  action {a['action']}: {json.dumps(detail, default=str)}", markup=False)


def dashboard(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the page "
                                                "(default reports/dashboard.html).")] = None,
    repo: Annotated[Path | None, typer.Option("--repo", "-C", help="Repository.")] = None,
) -> None:
    """One HTML page: current status and reasons, status history with promotions and rollbacks,
    the latest windows, links to the reports."""
    from loopline.config.params import load_params
    from loopline.core.files import write_text
    from loopline.core.layout import find_root
    from loopline.monitoring.dashboard import events_of, render
    from loopline.registry import actions as registry

    root = find_root(repo)
    params = load_params(root)
    reports = root / params.paths.reports
    mon_path = reports / "monitor.json"
    doc = json.loads(mon_path.read_text(encoding="utf-8")) if mon_path.is_file() else None
    hist_path = root / params.monitor.history
    history = ([json.loads(line) for line in hist_path.read_text(encoding="utf-8").splitlines()
                if line.strip()] if hist_path.is_file() else [])
    stage = params.registry.serving_stage
    try:
        events = events_of(registry.history(root, stage), stage)
    except LooplineError:
        events = []
    out = output or reports / "dashboard.html"
    import os

    links = [{"label": name, "href": os.path.relpath(reports / name, out.resolve().parent)}
             for name in ("monitor.html", "monitor.json", "simulate.html", "gate.html", "gate.md",
                          "evaluation.md")
             if (reports / name).is_file()]
    write_text(out, render(params.artifact, doc, history, events, links))
    typer.echo(f"dashboard written to {out} (status {doc['status'] if doc else 'NO DATA'})")


def add_commands(app: typer.Typer) -> None:
    app.command("monitor", cls=_Command)(monitor)
    app.command("dashboard", cls=_Command)(dashboard)
