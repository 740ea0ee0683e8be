"""``loopline simulate``: drive the whole loop against a live local service (see
:mod:`loopline.simulate.run`). Imports only typer at import time."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from loopline.cli.options import Command, JsonOpt, RepoOpt
from loopline.cli.tables import RAG_COLORS, console, print_json


def simulate(
    seed: Annotated[int, typer.Option("--seed", help="Seed of the held-back split, the stream "
                                      "and the faulty extract.")] = 0,
    workdir: Annotated[Path | None, typer.Option(
        "--workdir", help="The sandbox repository (default .loopline/simulate/seed-N); "
                          "replaced when it is an earlier sandbox.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A small search (3 candidates, 3 folds) "
                                        "in the sandbox, so each training takes seconds.")] = False,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="The HTML report (default reports/simulate.html); the timeline "
                               "goes next to it as simulate.json.")] = None,
    scenario: Annotated[str, typer.Option(
        "--scenario", help="loop: drift, retraining, a forced faulty model and its rollback; "
                           "canary: a good and a faulty candidate rolled out as canaries and "
                           "judged by the monitor.")] = "loop",
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Drift, delayed labels, AMBER, retraining, a forced faulty model, RED and rollback:
    the whole loop on the default data, against a live local service, in a sandbox copy
    (--scenario canary: two canary rollouts judged on live traffic)."""
    from rich.console import Console

    from loopline.config.params import load_params
    from loopline.core.layout import STATE_DIR, find_root
    from loopline.simulate import report
    from loopline.simulate.run import simulate as run

    if scenario not in ("loop", "canary"):
        raise typer.BadParameter(f"unknown scenario {scenario!r}: loop or canary",
                                 param_hint="--scenario")
    root = find_root(repo)
    params = load_params(root)
    name = f"seed-{seed}" if scenario == "loop" else f"canary-seed-{seed}"
    work = (workdir or root / STATE_DIR / "simulate" / name).resolve()
    err = Console(stderr=True, highlight=False)
    out = console()

    def on_phase(msg: str) -> None:
        if not as_json:
            err.print(f"[dim]…[/] {msg}", markup=True)

    def on_step(s) -> None:  # noqa: ANN001
        if as_json:
            return
        auc = "  –  " if s.roc_auc is None else f"{s.roc_auc:.3f}"
        ds = " – " if s.drift_share is None else f"{s.drift_share:>3.0%}"
        ev = "; ".join(f"{e['event']} {e.get('version') or ''}".strip() for e in s.events)
        err.print(f"step {s.step:>3}  new regime {s.drift:>4.0%}  served {','.join(s.served):<8} "
                  f"labels {s.labels:>4}  ROC AUC {auc}  drift {ds}  "
                  f"[{RAG_COLORS.get(s.status, 'dim')}]{s.status:<7}[/] {ev}", markup=True)

    if scenario == "canary":
        _canary(root, params, seed, work, quick, output, as_json, on_phase)
        return
    with err.status("simulating", spinner="dots") if not as_json else nullcontext():
        doc = run(root, seed=seed, workdir=work, quick=quick, on_step=on_step, on_phase=on_phase)
    html_path, json_path = report.write(root, params, doc, output)
    doc["report"], doc["timeline"] = str(html_path), str(json_path)
    if as_json:
        print_json(doc)
        return
    out.print(f"\nstatuses: {' → '.join(_runs(doc['statuses']))}")
    for e in doc["events"]:
        out.print(f"  step {e['step']:>3}: {e['event']} {e.get('version') or ''} ({e['note']})",
                  markup=False)
    out.print("registry (prod), oldest first: " + ", ".join(
        f"{e['event']}{' (forced)' if e['forced'] else ''} {e['version'] or ''}".strip()
        for e in doc["registry"]), markup=False)
    out.print(f"report: {html_path}; timeline: {json_path}; sandbox: {work} "
              f"(`loopline history -C {work}`)", markup=False)


def _canary(root: Path, params, seed: int, work: Path, quick: bool,  # noqa: ANN001
            output: Path | None, as_json: bool, on_phase) -> None:  # noqa: ANN001
    """``--scenario canary``: run it, write its report, print its timeline."""
    from rich.console import Console

    from loopline.simulate import report
    from loopline.simulate.canary import simulate_canary

    err = Console(stderr=True, highlight=False)

    def on_step(s: dict) -> None:
        if as_json:
            return
        served = ", ".join(f"{k} {v}" for k, v in s["served"].items())
        err.print(f"step {s['step']:>3}  {s['candidate']} step {s['rollout_step'] or '-'} "
                  f"({s['share'] or 0:g}%)  served {served:<22} candidate records "
                  f"{s['candidate_records'] or 0:>4} labels {s['candidate_labels'] or 0:>4}  "
                  f"{s['decision']}", markup=False)

    with err.status("simulating", spinner="dots") if not as_json else nullcontext():
        doc = simulate_canary(root, seed=seed, workdir=work, quick=quick, on_step=on_step,
                              on_phase=on_phase)
    html_path, json_path = report.write(root, params, doc, output)
    doc["report"], doc["timeline"] = str(html_path), str(json_path)
    if as_json:
        print_json(doc)
        return
    out = console()
    for r in doc["rollouts"]:
        out.print(f"{r['kind']} candidate {r['version']}: {r['outcome'] or 'still under way'}",
                  markup=False)
        for d in r["decisions"]:
            out.print(f"  step {d['step']:>3}: {d['decision']} at rollout step "
                      f"{d['rollout_step']} ({d['share']:g}%) on {d['candidate_records']} "
                      f"records, {d['candidate_labels']} labels; {d['label_to_decision_s']} s "
                      f"after the last label - {'; '.join(d['reasons'])}", markup=False)
    out.print(f"report: {html_path}; timeline: {json_path}; sandbox: {work} "
              f"(`loopline history -C {work}`)", markup=False)


def _runs(statuses: list[str]) -> list[str]:
    """GREEN GREEN AMBER → GREEN×2, AMBER."""
    out: list[str] = []
    for s in statuses:
        if out and out[-1].split("×")[0] == s:
            name, _, n = out[-1].partition("×")
            out[-1] = f"{name}×{int(n or 1) + 1}"
        else:
            out.append(s)
    return out


def add_commands(app: typer.Typer) -> None:
    """Add ``simulate`` to ``app`` (the ``loopline`` Typer app)."""
    app.command("simulate", cls=Command)(simulate)
