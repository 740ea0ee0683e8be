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
