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


TRICKY = {  # values as DVC writes them into dvc.lock: params of any type, odd paths
    "cmd": "loopline stage train",
    "deps": [{"path": "data/ratio/total (€).csv", "hash": "md5", "md5": "0123456789abcdef", "size": 12}],
    "params": {"params.yaml": {"model.learning_rate": 1e-05, "model.l2": 0.1, "flag": True, "none": None,
                               "yes": "yes", "one": "1.0", "région": "Größe: a/b #c", "big": 10**20,
                               "neg": -0.0, "list": [1, 2.5, "x"], "empty": {}, "multi": "a\nb"}},
    "outs": [{"path": "models/model.joblib", "hash": "md5", "md5": "fedcba9876543210", "size": 3}],
}


@pytest.mark.parametrize("lock", ["reference", "tricky"])
def test_the_lockfile_writer_writes_what_dvcs_round_trip_writes(tmp_path: Path, lock: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """dvc.lock updated from the safe parse: the same bytes as from DVC's round trip."""
    import copy

    from dvc import dvcfile
    from dvc.utils.serialize import dump_yaml

    from tests.helpers import REPO

    path = tmp_path / "dvc.lock"
    if lock == "reference":
        path.write_text((REPO / "dvc.lock").read_text(encoding="utf-8"), encoding="utf-8")
    else:
        dump_yaml(str(path), {"schema": "2.0", "stages": {"train": TRICKY, "gate": {"cmd": "loopline stage gate"}}})
    before = path.read_bytes()
    update = {"gate": {**copy.deepcopy(TRICKY), "cmd": "loopline stage gate"}, "new": {"cmd": "x"}}

    def rewrite() -> bytes:
        path.write_bytes(before)
        with dvcfile.modify_yaml(str(path)) as data:
            data["stages"].update(copy.deepcopy(update))
        return path.read_bytes()

    monkeypatch.setattr(dvcfile, "modify_yaml", dvcfile.modify_yaml)  # restored after the test
    round_trip = rewrite()
    assert dvc_internals.install_lockfile_writer() and dvc_internals.install_lockfile_writer()
    assert dvcfile.modify_yaml.loopline
    assert rewrite() == round_trip and round_trip != before
    with dvcfile.modify_yaml(str(path)):  # unchanged data: unchanged bytes
        pass
    assert path.read_bytes() == round_trip


def test_other_yaml_files_keep_dvcs_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dvc import dvcfile

    monkeypatch.setattr(dvcfile, "modify_yaml", dvcfile.modify_yaml)
    assert dvc_internals.install_lockfile_writer()
    path = tmp_path / "dvc.yaml"
    path.write_text("# the user's comment\nstages:\n  a:\n    cmd: echo a  # why\n", encoding="utf-8")
    with dvcfile.modify_yaml(str(path)) as data:
        data["stages"]["b"] = {"cmd": "echo b"}
    assert path.read_text(encoding="utf-8") == ("# the user's comment\nstages:\n  a:\n    cmd: echo a  # why\n"
                                                "  b:\n    cmd: echo b\n")
