"""`loopline simulate`'s summary (cli/simulate.py)."""

from __future__ import annotations

from loopline.cli.simulate import _runs


def test_status_runs_are_summarised() -> None:
    assert _runs(["GREEN", "GREEN", "AMBER", "RED", "RED", "RED", "GREEN"]) == \
        ["GREEN×2", "AMBER", "RED×3", "GREEN"]
