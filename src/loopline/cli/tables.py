"""What the ``loopline`` commands print: each table and display built once, here.

rich is imported when something is printed, never at start-up. ``--json`` output goes
through :func:`emit`; everything else is for people (a terminal, or a CI log).
"""

from __future__ import annotations

import json
import os
from datetime import UTC

import typer

RAG_COLORS = {"GREEN": "green", "AMBER": "yellow", "RED": "red"}
#: the width of a table printed to a pipe or a CI log (rich would use 80 columns): as wide
#: as its content, so no check name is cut and each reason stays on one line
PIPE_WIDTH = 1000


def console(stderr: bool = False, file=None):  # noqa: ANN001, ANN201 (rich is imported lazily)
    """A rich console for people: no syntax highlighting, long lines kept whole.

    On a terminal it uses the terminal's width; elsewhere (a pipe, a CI log) ``$COLUMNS``
    when set, else :data:`PIPE_WIDTH`, where tables take the width their content needs.
    """
    from rich.console import Console

    out = Console(stderr=stderr, file=file, highlight=False, soft_wrap=True)
    if not out.is_terminal:
        width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else PIPE_WIDTH
        out = Console(stderr=stderr, file=file, highlight=False, soft_wrap=True, width=width)
    return out


def print_json(doc: dict | list) -> None:
    """``--json`` output: ``doc`` as one line of JSON on stdout."""
    typer.echo(json.dumps(doc, default=str))


def emit(doc: dict | list, as_json: bool, text: str) -> None:
    """``doc`` as JSON with ``--json``, else ``text`` for people."""
    if as_json:
        print_json(doc)
    else:
        typer.echo(text)


def print_gate(out, doc: dict) -> None:  # noqa: ANN001
    """The gate's checks (reports/gate.json) with its verdict and champion as the title."""
    from rich.markup import escape
    from rich.table import Table

    verdict = doc.get("verdict", "?")
    color = "green" if verdict == "pass" else "red"
    champ = doc.get("champion") or {}
    title = f"gate: [{color}]{verdict.upper()}[/]" + (
        f" (champion {champ['version']})" if champ.get("version")
        else " (no champion yet: no champion checks)")
    table = Table(title=title, show_header=True, header_style="bold")
    for col in ("check", "value", "bound", "result", "reason"):
        table.add_column(col, justify="right" if col in ("value", "bound") else "left",
                         no_wrap=col != "reason")
    for c in doc.get("checks", []):
        value = "n/a" if c["value"] is None else f"{c['value']:.4g}"
        bound = "n/a" if c["threshold"] is None else f"{c['op']} {c['threshold']:.4g}"
        res = ("[dim]skipped[/]" if c.get("skipped")
               else ("[green]pass[/]" if c["passed"] else "[red]FAIL[/]"))
        table.add_row(escape(c["name"]), value, bound, res, escape(c["reason"]))
    out.print(table)


def print_metrics(out, metrics: dict) -> None:  # noqa: ANN001
    """The held-out metrics, in the display order of :data:`loopline.core.names.METRICS`."""
    if not metrics:
        return
    from rich.table import Table

    from loopline.core.names import METRICS

    table = Table(title="held-out metrics", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in METRICS:
        if metrics.get(k) is not None:
            table.add_row(k, f"{metrics[k]:.4f}")
    out.print(table)


def print_history(events: list[dict]) -> None:
    """The registry's audit timeline, newest first; forced and deleted events in red."""
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    if not out.is_terminal:  # a log or a pipe: one line per event, never wrapped
        out = Console(highlight=False, width=240)
    if not events:
        out.print("no registry events yet (run `loopline register`)")
        return
    table = Table(show_header=True, header_style="bold")
    for col in ("when (UTC)", "event", "version", "stage", "tag", "gate", "who"):
        table.add_column(col, no_wrap=True)
    table.add_column("note")
    for e in events:
        event = e["event"] + (" (forced)" if e["forced"] else "")
        style = "red" if e["forced"] or e["event"] == "deleted" else None
        table.add_row((e["time"] or "-").replace("T", " ").rstrip("Z"), event, e["version"] or "-",
                      e["stage"] or "-", e["tag"], e["gate"] or "-", e["who"] or "-",
                      e["reason"] or "", style=style)
    out.print(table)


def _fmt(value: float | None, fmt: str = "{:.3f}") -> str:
    return "–" if value is None else fmt.format(value)


_TARGETS = (("latency_p50_ms", "p50", "{:.2f} ms"), ("latency_p99_ms", "p99", "{:.2f} ms"),
            ("availability", "availability", "{:.2%}"), ("accuracy", "accuracy", "{:.3f}"),
            ("cost_per_1k", "cost/1k", "{:.6f}"))


def _target_cells(window: dict) -> list[str]:
    """The latest window's targets, each value with its grade (colour on a terminal)."""
    found, grades = window["targets"], window.get("grades") or {}
    cells = []
    for key, label, fmt in _TARGETS:
        if found.get(key) is not None:
            g = grades.get("accuracy_range" if key == "accuracy" else key) or "–"
            cells.append(f"{label} {fmt.format(found[key])} [{RAG_COLORS.get(g, 'dim')}]{g}[/]")
    gaps = found.get("slice_gap") or {}
    if gaps:
        col = max(gaps, key=lambda c: gaps[c]["gap"])
        g = grades.get("slice_gap") or "–"
        cells.append(f"slice gap {gaps[col]['gap']:.3f} ({col}) [{RAG_COLORS.get(g, 'dim')}]{g}[/]")
    return cells


def print_monitor(doc: dict) -> None:
    """``loopline monitor``: one row per window, then the reasons, alerts and actions."""
    from datetime import datetime

    from rich.table import Table

    out = console()
    table = Table(title=f"monitor: [{RAG_COLORS.get(doc['status'], 'dim')}]{doc['status']}[/] "
                        f"(windows of {doc['window']})")
    for col in ("window end (UTC)", "records", "labels", "roc_auc", "accuracy", "drift share",
                "worst missing", "p99 ms", "errors", "status"):
        table.add_column(col, justify="right" if col not in ("status",) else "left")
    for w in doc["windows"]:
        perf = w.get("performance") or {}
        miss = w.get("missing_rate") or {}
        end = datetime.fromtimestamp(w["end"], tz=UTC).strftime("%Y-%m-%d %H:%M")
        table.add_row(end, str(w.get("records", 0)), str(w.get("labels", 0)),
                      _fmt(perf.get("roc_auc")), _fmt(perf.get("accuracy")),
                      _fmt(w.get("drift_share"), "{:.0%}"),
                      _fmt(max(miss.values()) if miss else None, "{:.0%}"),
                      _fmt((w.get("latency_ms") or {}).get("p99"), "{:.2f}"),
                      _fmt(w.get("error_rate"), "{:.1%}"),
                      f"[{RAG_COLORS.get(w['status'], 'dim')}]{w['status']}[/]")
    out.print(table)
    latest = next((w for w in reversed(doc["windows"]) if w.get("targets")), None)
    if latest:
        out.print("  targets: " + " · ".join(_target_cells(latest)))
    for r in doc["reasons"]:
        out.print(f"  {r}", markup=False)
    if doc.get("rollout"):
        from loopline.monitoring.judge import describe

        out.print(f"  {describe(doc['rollout'])}", markup=False)
    for a in doc.get("alerts") or []:
        state = "sent" if a["delivered"] else f"not sent ({a.get('error')})"
        out.print(f"  alert via {a['channel']}: {state}", markup=False)
    for a in doc.get("actions") or []:
        detail = {k: v for k, v in a.items() if k != "action"}
        out.print(f"  action {a['action']}: {json.dumps(detail, default=str)}", markup=False)


def print_records(frame, shown: int | None) -> None:  # noqa: ANN001 (a pandas DataFrame)
    """``loopline log``: the records (or summary rows) as a table; ``shown`` rows at most, and a
    note when there were more (the frame holds one row more than shown when it was cut)."""
    from rich.table import Table

    out = console()
    if frame.empty:
        out.print("no records match", markup=False)
        return
    more = shown is not None and len(frame) > shown
    rows = frame.head(shown) if more else frame
    table = Table(show_header=True, header_style="bold")
    for col in rows.columns:
        table.add_column(str(col), overflow="fold")
    for rec in rows.itertuples(index=False):
        table.add_row(*("–" if v is None or v != v else
                        (v.strftime("%Y-%m-%d %H:%M:%S") if hasattr(v, "strftime") else
                         f"{v:.4g}" if isinstance(v, float) else str(v)) for v in rec),
                      )
    out.print(table)
    if more:
        out.print(f"(first {shown} rows; --limit N for more, --csv or --json for all)",
                  markup=False)


class StageDisplay:
    """``loopline run``'s progress: live per-stage rows on a terminal, plain lines elsewhere."""

    MARKS = {"done": "[green]✓[/]", "skipped": "[dim]=[/]", "restored": "[cyan]↺[/]",
             "failed": "[red]✗[/]"}

    def __init__(self, out, names: list[str]) -> None:  # noqa: ANN001
        self.console = out
        self.names = names
        self.states: dict[str, str] = {}
        self.live = None
        # a workflow step's log is a file even when the runner gives it a terminal (act
        # does): redrawn rows would land in it as hundreds of escape-coded lines
        if out.is_terminal and os.environ.get("GITHUB_ACTIONS") != "true":
            from rich.live import Live

            self.live = Live(self._render(), console=out, refresh_per_second=8, transient=False)
            self.live.start()

    def _render(self):  # noqa: ANN202
        from rich.spinner import Spinner
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        for i, name in enumerate(self.names, 1):
            state = self.states.get(name, "")
            label = f"[{i}/{len(self.names)}] {name}"
            if state == "running":
                table.add_row(Spinner("dots"), label, "[yellow]running[/]")
            else:
                table.add_row(self.MARKS.get(state) or " ", label, state or "[dim]waiting[/]")
        return table

    def update(self, ev) -> None:  # noqa: ANN001 (a loopline.pipeline.repro stage event)
        self.states[ev.stage] = ev.state
        if self.live is not None:
            self.live.update(self._render())
            return
        detail = f" ({ev.seconds:.1f} s)" if ev.state in ("done", "failed") else ""
        extra = ""
        if ev.summary:
            extra = " " + json.dumps({k: v for k, v in ev.summary.items() if k != "seconds"},
                                     default=str)
        self.console.print(f"{ev.stage}: {ev.state}{detail}{extra}", markup=False)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


def print_ci(res: dict) -> None:
    """The steps of a ``loopline ci`` run (act on a clean clone) and its verdict."""
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    if not out.is_terminal:  # a log or a pipe: step names kept whole
        out = Console(highlight=False, width=200)
    table = Table(show_header=True, header_style="bold")
    for col in ("job", "step", "outcome", "seconds"):
        table.add_column(col, no_wrap=col != "step", justify="right" if col == "seconds" else "left")
    colors = {"success": "green", "failure": "red", "skipped": "dim"}
    for s in res["steps"]:
        color = colors.get(s["outcome"].split()[0], "yellow")
        table.add_row(s["job"], s["step"], f"[{color}]{s['outcome']}[/]",
                      "-" if s["seconds"] is None else f"{s['seconds']:.1f}")
    out.print(table)
    for note in res["notices"]:
        out.print(f"  {note}")
    color = {"passed": "green", "failed": "red"}.get(res["status"], "yellow")
    jobs = ", ".join(f"{job} {status}" for job, status in res["jobs"].items())
    out.print(f"{res['workflow']}: [bold {color}]{res['status'].upper()}[/] on {res['event']} "
              f"({jobs}) in {res['seconds']:.0f}s; artifacts in {res['artifacts']}")
