"""Every command, given the usual bad input, says what is wrong in one `error:` line.

No traceback, no lost work: the input a user gets wrong (outside a repo, an unknown version
or stage, a missing or malformed file, a bad config value, a bad option, a dirty tree) is named
in one line on stderr and the command exits non-zero.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.commands import loopline, sh

OUTSIDE = [
    ["run"], ["params", "--check"], ["gate"], ["metrics"], ["register"], ["which", "prod"],
    ["history"], ["get", "prod", "-o", "out"], ["promote", "v0.1.0", "--to", "prod"],
    ["rollback", "--stage", "prod"], ["serve", "--dry-run"], ["build"], ["report"],
    ["ci", "pr"], ["pull"], ["push"], ["monitor"], ["dashboard"], ["simulate", "--quick"],
    ["stage", "train"],
]


def _one_error(res, *words: str) -> None:
    err = res.stderr
    assert res.returncode != 0, (res.stdout, err)
    assert "Traceback" not in err + res.stdout, err
    first = err.strip().splitlines()[0] if err.strip() else ""
    assert first.startswith("error: "), err
    for w in words:
        assert w in first, (w, first)


@pytest.mark.parametrize("args", OUTSIDE, ids=lambda a: a[0])
def test_outside_a_repo(args: list[str], tmp_path: Path) -> None:
    _one_error(loopline(*args, cwd=tmp_path, check=False), "not a loopline repo")


BUILT_BAD = [
    (["which", "nowhere"], "nowhere"),
    (["which", "prod"], "prod"),
    (["history", "--stage", "nowhere"], "nowhere"),
    (["promote", "v9.9.9", "--to", "prod"], "v9.9.9"),
    (["promote", "not-a-version", "--to", "prod"], "not-a-version"),
    (["promote", "HEAD", "--to", "nowhere"], "nowhere"),
    (["rollback", "--stage", "prod"], "prod"),
    (["get", "v9.9.9", "-o", "out"], "v9.9.9"),
    (["serve", "v9.9.9", "--dry-run"], "v9.9.9"),
    (["register", "--bump", "huge"], "--bump"),
    (["register", "--version", "1.2"], "1.2"),
    (["register", "--force"], "--reason"),
    (["params", "data.split.test_size=1.5"], "data.split.test_size"),
    (["params", "model=nope"], "model"),
    (["run", "search.cv=1"], "search.cv"),
    (["stage", "nope"], "nope"),
    (["report", "--base", "no-such-ref"], "no-such-ref"),
    (["ci", "nope"], "nope"),
    (["monitor", "--window", "soon"], "window"),
    (["schema", "missing.csv", "--target", "x"], "missing.csv"),
    (["init", "elsewhere", "--data", "missing.csv", "--target", "x"], "missing.csv"),
]


@pytest.mark.parametrize("args,word", BUILT_BAD, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_bad_arguments_in_a_built_instance(args: list[str], word: str, built_copy: Path) -> None:
    _one_error(loopline(*args, cwd=built_copy, check=False), word)


def test_a_dirty_tree_is_not_registered(built_copy: Path) -> None:
    (built_copy / "params.yaml").write_text((built_copy / "params.yaml").read_text() + "\n")
    _one_error(loopline("register", cwd=built_copy, check=False), "uncommitted")


def test_a_malformed_data_file_names_the_file_and_keeps_the_old_outputs(built_copy: Path) -> None:
    src = built_copy / "data" / "credit_data.csv"
    before = (built_copy / "models" / "model.onnx").read_bytes()
    src.write_text(src.read_text().splitlines()[0] + "\n1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16\n")
    res = loopline("run", cwd=built_copy, check=False)
    assert res.returncode != 0 and "Traceback" not in res.stderr + res.stdout
    assert "credit_data.csv" in res.stderr + res.stdout
    assert (built_copy / "models" / "model.onnx").read_bytes() == before


def test_a_bad_config_file_names_the_file(built_copy: Path) -> None:
    conf = built_copy / "conf" / "config.yaml"
    conf.write_text(conf.read_text() + "\nseed: [unclosed\n")
    _one_error(loopline("params", cwd=built_copy, check=False), "conf")
    shutil.copy(built_copy / "params.yaml", built_copy / "params.bak")
    (built_copy / "params.yaml").write_text("artifact: [\n")
    _one_error(loopline("which", "prod", cwd=built_copy, check=False), "params.yaml")
    sh("git", "checkout", "--", ".", cwd=built_copy)
