"""Stages run inside dvc's process: same output, same errors, the shell for everything else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopline.core.errors import LooplineError
from loopline.pipeline import dvc_internals
from loopline.pipeline import runner as stagerun


@pytest.fixture()
def stage_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.delenv("DVC_STAGE", raising=False)
    monkeypatch.delenv("LOOPLINE_VERBOSE", raising=False)
    return {"DVC_STAGE": "train", "DVC_ROOT": str(tmp_path), "PATH": os.environ["PATH"]}


def test_a_stage_in_process_prints_its_summary_and_sees_dvc_variables(
        tmp_path: Path, stage_env: dict, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    seen = {}

    def fake(name: str, root: Path) -> dict:
        seen.update(name=name, cwd=os.getcwd(), stage=os.environ.get("DVC_STAGE"))
        return {"rows": 3}

    monkeypatch.setattr(stagerun, "run_stage", fake)
    monkeypatch.setattr("loopline.core.layout.find_root", lambda _: tmp_path)
    before = os.getcwd()
    assert stagerun.run_in_process("train", str(tmp_path), stage_env) == 0
    assert seen == {"name": "train", "cwd": str(tmp_path), "stage": "train"}
    assert os.getcwd() == before and "DVC_STAGE" not in os.environ
    mark, summary = capsys.readouterr().out.splitlines()
    assert mark == stagerun.IN_PROCESS_MARK + "train"
    assert summary.startswith(stagerun.SUMMARY_PREFIX) and '"rows": 3' in summary


def test_a_user_error_in_process_is_one_line_and_its_exit_code(
        tmp_path: Path, stage_env: dict, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    def fake(name: str, root: Path) -> dict:
        raise LooplineError("column 'Age' [min]: 1 row below the minimum 18",
                            details="  row 3: 7", exit_code=2)

    monkeypatch.setattr(stagerun, "run_stage", fake)
    monkeypatch.setattr("loopline.core.layout.find_root", lambda _: tmp_path)
    assert stagerun.run_in_process("validate", str(tmp_path), stage_env) == 2
    err = capsys.readouterr().err
    assert err == "error: column 'Age' [min]: 1 row below the minimum 18\n  row 3: 7\n"
    assert "DVC_STAGE" not in os.environ


def test_a_bug_in_process_shows_its_traceback(
        tmp_path: Path, stage_env: dict, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    def fake(name: str, root: Path) -> dict:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(stagerun, "run_stage", fake)
    monkeypatch.setattr("loopline.core.layout.find_root", lambda _: tmp_path)
    before = os.getcwd()
    assert stagerun.run_in_process("train", str(tmp_path), stage_env) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: boom" in err
    assert os.getcwd() == before


def test_sys_exit_in_a_stage_is_its_exit_code_not_the_end_of_dvc(
        tmp_path: Path, stage_env: dict, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    codes = iter([3, "cannot go on", None, True])

    def fake(name: str, root: Path) -> dict:
        raise SystemExit(next(codes))

    monkeypatch.setattr(stagerun, "run_stage", fake)
    monkeypatch.setattr("loopline.core.layout.find_root", lambda _: tmp_path)
    assert stagerun.run_in_process("train", str(tmp_path), stage_env) == 3
    assert stagerun.run_in_process("train", str(tmp_path), stage_env) == 1
    assert capsys.readouterr().err == "cannot go on\n"
    assert stagerun.run_in_process("train", str(tmp_path), stage_env) == 0
    assert stagerun.run_in_process("train", str(tmp_path), stage_env) == 1  # sys.exit(True)


def test_install_runs_loopline_stages_here_and_other_commands_in_a_shell(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dvc.stage import run as dvc_run
    from dvc.stage.exceptions import StageCmdFailedError

    monkeypatch.setattr(dvc_run, "_run", dvc_run._run)  # restored after the test
    calls = []
    monkeypatch.setattr(stagerun, "run_in_process",
                        lambda name, cwd, env: calls.append(name) or (0 if name == "train" else 1))
    assert dvc_internals.install() and dvc_internals.install()  # a second install changes nothing
    kwargs = {"cwd": str(tmp_path), "env": dict(os.environ), "close_fds": True}
    dvc_run._run("/bin/sh", "loopline stage train", **kwargs)
    with pytest.raises(StageCmdFailedError):
        dvc_run._run("/bin/sh", "loopline stage gate", **kwargs)
    assert calls == ["train", "gate"]
    # anything else is a shell command, as in a plain dvc repro
    dvc_run._run("/bin/sh", "echo shell > out.txt", **kwargs)
    assert (tmp_path / "out.txt").read_text() == "shell\n"
    dvc_run._run("/bin/sh", "loopline stage train --verbose || true", **kwargs)
    assert calls == ["train", "gate"]
    with pytest.raises(StageCmdFailedError):
        dvc_run._run("/bin/sh", "exit 3", **kwargs)


def test_the_installed_dvc_keeps_the_internals_loopline_relies_on() -> None:
    """Fails loudly when a DVC upgrade moves a log line, _run's signature or a module."""
    assert dvc_internals.contract() == []


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
