"""DVC's internals that loopline uses (pipeline/dvc_internals.py): loopline stages run here,
the shell for everything else; a contract test against the installed DVC."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopline.pipeline import dvc_internals
from loopline.pipeline import runner as stagerun


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
