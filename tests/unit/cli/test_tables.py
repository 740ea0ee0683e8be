"""What loopline prints (cli/tables.py): tables in a pipe or a CI log are as wide as their
content, so check names are whole and each reason is on one line."""

from __future__ import annotations

import io

from loopline.cli import tables

LONG = "slice_roc_auc[parents and other relatives]"
REASON = ("roc_auc on Home=parents and other relatives (31 rows) 0.6123 misses the bound "
          "(at least 0.7000), which is a long reason for a CI log of eighty columns")


def _gate() -> dict:
    checks = [{"name": LONG, "value": 0.6123, "threshold": 0.7, "op": ">=", "passed": False,
               "skipped": False, "reason": REASON},
              {"name": "prior_roc_auc", "value": 0.8, "threshold": 0.55, "op": ">=", "passed": True,
               "skipped": False, "reason": "roc_auc vs class prior (0.5000 + margin 0.05): fine"}]
    return {"verdict": "fail", "checks": checks, "champion": {}}


def test_a_gate_table_in_a_pipe_keeps_names_and_reasons_whole(monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    buf = io.StringIO()
    tables.print_gate(tables.console(file=buf), _gate())
    text = buf.getvalue()
    rows = [ln for ln in text.splitlines() if LONG in ln]
    assert len(rows) == 1 and REASON in rows[0]
    assert len(max(text.splitlines(), key=len)) > 80


def test_columns_sets_the_width_of_a_pipe(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    assert tables.console(file=io.StringIO()).width == 100
    monkeypatch.setenv("COLUMNS", "")
    assert tables.console(file=io.StringIO()).width == tables.PIPE_WIDTH


def test_stage_progress_is_live_on_a_terminal_but_not_in_a_workflow_step(monkeypatch) -> None:
    from rich.console import Console

    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    term = Console(file=io.StringIO(), force_terminal=True)
    display = tables.StageDisplay(term, ["train"])
    assert display.live is not None
    display.live.stop()
    monkeypatch.setenv("GITHUB_ACTIONS", "true")  # act gives steps a terminal: lines instead
    assert tables.StageDisplay(term, ["train"]).live is None
