"""Driving dvc repro (pipeline/repro.py): when a repro surely runs a stage."""

from __future__ import annotations

from pathlib import Path


def test_must_run_only_when_a_repro_surely_runs_a_stage(tmp_path: Path) -> None:
    from loopline.pipeline.repro import must_run

    (tmp_path / "dvc.yaml").write_text("stages:\n  ingest:\n    cmd: x\n    params: [data.source]\n"
                                       "  train:\n    cmd: y\n    params: [model]\n")
    assert must_run(tmp_path, None, [])  # no dvc.lock yet: every stage runs
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages:\n  ingest: {cmd: x}\n  train: {cmd: y}\n")
    assert not must_run(tmp_path, None, [])
    assert must_run(tmp_path, None, ["model.estimator.max_iter"])
    assert must_run(tmp_path, None, ["data.source"])
    assert not must_run(tmp_path, None, ["data.target", "modelx"])
    assert not must_run(tmp_path, ["train"], ["model"])  # with targets: dvc decides
    (tmp_path / "dvc.yaml").write_text("stages: [unclosed\n")
    assert not must_run(tmp_path, None, ["model"])  # unreadable: ask dvc


def test_a_crashed_stage_reports_its_exception_and_last_lines() -> None:
    """A stage that dies of an exception (not a LooplineError) shows its type and message,
    and the last lines of its output, in `loopline run` and its --json."""
    from loopline.pipeline.repro import TAIL_LINES, _result, _Tracker

    t = _Tracker(None)
    lines = ["Running stage 'train':", "> loopline stage train", "Running stage 'export':",
             "> loopline stage export", *[f"progress {i}" for i in range(20)],
             "Traceback (most recent call last):", '  File "x.py", line 1, in <module>',
             "ValueError: columns missing from the data frame: ['ratio/total']",
             "ERROR: failed to reproduce 'export': failed to run: loopline stage export, exited with 1"]
    for line in lines:
        t.feed(line)
    res = _result(t, 1, 1.0)
    assert res.failed_stage == "export"
    assert res.error == "error: ValueError: columns missing from the data frame: ['ratio/total']"
    assert len(res.tail) == TAIL_LINES and res.tail[-1].startswith("ValueError: columns missing")
    assert "loopline stage train" not in res.tail  # only the failed stage's output

    t = _Tracker(None)  # a LooplineError prints its own one line: that is the cause
    for line in ["Running stage 'gate':", "error: gate.min names an unknown metric 'auc'",
                 "ERROR: failed to reproduce 'gate': failed to run"]:
        t.feed(line)
    assert _result(t, 1, 1.0).error == "error: gate.min names an unknown metric 'auc'"
