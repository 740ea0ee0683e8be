"""Monitoring commands of the ``loopline`` CLI: monitor, the RAG status of the live model
from the inference log (:mod:`loopline.monitoring.check`), and dashboard, its HTML page
(:mod:`loopline.monitoring.dashboard`). Imports only typer at import time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopline.cli.options import Command, JsonOpt, RepoOpt
from loopline.cli.tables import print_json, print_monitor, print_records

EXIT = {"GREEN": 0, "AMBER": 3, "RED": 4}  # 1 (error) and 2 (usage) keep their meaning


def monitor(
    window: Annotated[str | None, typer.Option("--window", help="Window length, e.g. 1h, 1d "
                                               "(default monitor.window).")] = None,
    windows: Annotated[int | None, typer.Option("--windows", help="How many windows.")] = None,
    until: Annotated[float | None, typer.Option("--until", help="End of the last window "
                                                "(Unix time; default now).")] = None,
    log: Annotated[str | None, typer.Option("--log", help="Inference log: a SQLite file or "
                                            "the store the replicas ship to (s3://bucket/prefix, "
                                            "file:///dir); default serve.log_store, else "
                                            "serve.log.path.")] = None,
    html: Annotated[bool, typer.Option("--html/--no-html", help="Write the Evidently HTML "
                                       "report of the latest window.")] = True,
    act: Annotated[bool, typer.Option("--act", help="Act on the status: record the imputation of "
                                      "alarming features; on AMBER retrain on the labelled window "
                                      "(promote on a passed gate); on RED live performance roll "
                                      "prod back; advance, complete or abort the rollout under "
                                      "way as judged on the live log (and reload "
                                      "--service-url).")] = False,
    service_url: Annotated[str | None, typer.Option(
        "--service-url", help="The running service to reload after a rollback or a rollout's step.")] = None,
    push: Annotated[str | None, typer.Option(
        "--push", metavar="REMOTE", help="Push a rollback's or a rollout's tags to REMOTE (as CI does).")] = None,
    retrain_pr: Annotated[bool, typer.Option(
        "--retrain-pr", help="Propose a passed retraining as a pull request (branch pushed to "
                             "--push REMOTE; GITHUB_TOKEN) instead of registering and promoting "
                             "it here: what CI does.")] = False,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Drift, missing data, prediction drift, performance, latency and error rate per window; RAG status and alerts.

    Exit status: 0 GREEN (or no data), 3 AMBER, 4 RED (1 and 2 stay errors).
    """
    from loopline.config.params import load_params, revalidate
    from loopline.core.layout import find_root
    from loopline.monitoring.check import check
    from loopline.serving import spool
    from loopline.serving.log_check import inspect
    from loopline.serving.log_store import default_source, is_url

    root = find_root(repo)
    params = load_params(root)
    cfg = revalidate(params.monitor, "monitor", window=window, windows=windows)
    source = log or default_source(root, params.serve)
    log_path = None if is_url(source) or not isinstance(source, (str, Path)) else Path(source)
    if log_path is not None:
        inspect(log_path).close()  # a damaged log: one error line naming it, not NO DATA
    doc = check(root, params, cfg, log_path=source, until=until,
                html=html, act=act, service_url=service_url, push=push, retrain_pr=retrain_pr)
    waiting = spool.pending(log_path) if log_path is not None else 0
    if waiting:
        doc.setdefault("warnings", []).append(
            f"{waiting} rows the service could not write to {log_path} wait in "
            f"{spool.path_of(log_path)}; they are not in these figures and go into the log "
            "when the service starts next")
    if as_json:
        print_json(doc)
    else:
        print_monitor(doc)
    for line in doc.get("warnings") or []:
        typer.echo(f"warning: {line}", err=True)
    raise typer.Exit(EXIT.get(doc["status"], 0))


def dashboard(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the page "
                                                "(default reports/dashboard.html).")] = None,
    repo: RepoOpt = None,
) -> None:
    """One HTML page: current status and reasons, status history with promotions and rollbacks,
    the latest windows, links to the reports."""
    from loopline.config.params import load_params
    from loopline.core.layout import find_root
    from loopline.monitoring import dashboard as page

    root = find_root(repo)
    out, status = page.write(root, load_params(root), output)
    typer.echo(f"dashboard written to {out} (status {status or 'NO DATA'})")


def _names(values: list[str] | None) -> list[str]:
    """``--columns a,b --columns c`` → ``[a, b, c]`` (a comma inside a name: repeat the option)."""
    return [p.strip() for v in values or [] for p in v.split(",") if p.strip()]


def log(
    since: Annotated[str | None, typer.Option("--since", help="From this long ago (24h, 7d) or "
                                              "this ISO date/time (UTC).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Until this long ago or this ISO "
                                              "date/time.")] = None,
    version: Annotated[str | None, typer.Option("--version", help="Only records answered by "
                                                "this model version.")] = None,
    where: Annotated[str | None, typer.Option("--where", help="A SQL condition over the record "
                                              "columns, e.g. \"Home == 'rent' AND Age < 30\" "
                                              "(quote odd names: \"ratio/total\").")] = None,
    wrong: Annotated[bool, typer.Option("--wrong", help="Only labelled records whose "
                                        "prediction was wrong.")] = False,
    labelled: Annotated[bool, typer.Option("--labelled", help="Only records with a feedback "
                                           "label.")] = False,
    columns: Annotated[list[str] | None, typer.Option(
        "--columns", "-c", metavar="COL[,COL…]",
        help="Columns to show (comma-separated or repeated).")] = None,
    by: Annotated[list[str] | None, typer.Option(
        "--by", metavar="COL[,COL…]",
        help="Summarise per value of these columns: records, labelled, wrong, accuracy, "
             "mean confidence.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="At most this many rows "
                                              "(default 20 on a terminal, all with --json/"
                                              "--csv).")] = None,
    sql: Annotated[str | None, typer.Option("--sql", help="Any SQL over the tables records "
                                            "and errors (DuckDB).")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout.")] = False,
    log_path: Annotated[str | None, typer.Option("--log", help="Inference log: a SQLite file "
                                                 "or the store the replicas ship to (s3://bucket/"
                                                 "prefix, file:///dir); default serve.log_store, "
                                                 "else serve.log.path.")] = None,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """What the model did, record by record: filter the inference log without writing SQL.

    Columns: time, request_id, idx, version, prediction, label, correct, confidence,
    latency_ms, then every input column under its own name.
    """
    from loopline.config.params import load_params
    from loopline.core.layout import find_root
    from loopline.monitoring.query import Query, run
    from loopline.serving.log_store import default_source

    if csv and as_json:
        raise typer.BadParameter("choose one of --csv and --json", param_hint="--csv")
    source = log_path
    if source is None:
        root = find_root(repo)
        source = default_source(root, load_params(root).serve)
    shown = limit if limit is not None or csv or as_json else 20
    q = Query(since=since, until=until, version=version, where=where, wrong=wrong,
              labelled=labelled, columns=_names(columns), by=_names(by),
              limit=None if shown is None else shown + (0 if csv or as_json else 1), sql=sql)
    frame = run(source, q)
    for new, own in frame.attrs.get("renamed", {}).items():  # names that DuckDB would mix up
        typer.echo(f"note: input {own!r} is column {new!r} here (column names ignore case, and "
                   "the first columns are the record's own)", err=True)
    if csv:
        typer.echo(frame.to_csv(index=False), nl=False)
    elif as_json:
        typer.echo(frame.to_json(orient="records", date_format="iso", force_ascii=False))
    else:
        print_records(frame, shown)


def add_commands(app: typer.Typer) -> None:
    """Add ``monitor``, ``log`` and ``dashboard`` to ``app`` (the ``loopline`` Typer app)."""
    app.command("monitor", cls=Command)(monitor)
    app.command("log", cls=Command)(log)
    app.command("dashboard", cls=Command)(dashboard)
