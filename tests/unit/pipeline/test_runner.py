"""Stages run inside dvc's process (pipeline/runner.py): same output, same errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopline.core.errors import LooplineError
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


def test_later_imports_are_prefetched_only_when_the_stages_run_in_dvcs_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from loopline.pipeline import runner

    for name in ("wave", "loopline_no_such_module", "tomllib"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(runner, "LATER_IMPORTS", ("wave", "loopline_no_such_module", "tomllib"))
    monkeypatch.setattr(runner, "_in_dvc_process", False)
    assert runner.prefetch_later_imports() is None  # a stage process of its own: nothing
    monkeypatch.setattr(runner, "_in_dvc_process", True)
    thread = runner.prefetch_later_imports()
    assert thread is not None
    thread.join(timeout=60)
    assert "wave" in sys.modules  # imported in the background
    assert "tomllib" not in sys.modules  # a failed import stops the prefetch, silently
    monkeypatch.setenv("LOOPLINE_PREFETCH", "0")
    assert runner.prefetch_later_imports() is None
