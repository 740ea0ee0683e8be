"""The inference log's start-up check (serving/log_check.py) on each kind of damage."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from loopline.serving import log_check, spool
from loopline.serving.inference_log import SCHEMA_VERSION, read_predictions
from tests.helpers.logs import DAMAGE, sound_log


@pytest.mark.parametrize("name", list(DAMAGE))
def test_each_damage_is_refused_naming_the_file_and_the_fix(name: str, tmp_path: Path) -> None:
    path = sound_log(tmp_path / "logs" / "inference.sqlite")
    before = {p: p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()}
    damage, words = DAMAGE[name]
    damage(path)
    with pytest.raises(log_check.BadLog) as err:
        log_check.open_log(path)
    message = str(err.value)
    assert words in message and "\n" not in message
    assert str(path if name != "logs is a file" else path.parent) in message
    assert "--log-reset" in message
    with pytest.raises(log_check.BadLog):  # the monitor refuses it the same way
        log_check.inspect(path).close()
    assert before  # nothing of what was there is deleted by a refusal
    assert path.exists() or path.parent.is_file()


@pytest.mark.parametrize("name", list(DAMAGE))
def test_log_reset_moves_the_bad_log_aside_and_starts_a_new_one(name: str, tmp_path: Path) -> None:
    path = sound_log(tmp_path / "logs" / "inference.sqlite")
    DAMAGE[name][0](path)
    kept = sorted(p.name for p in tmp_path.iterdir())
    state = log_check.open_log(path, reset=True)
    assert state["created"] and state["moved_aside"]
    for moved in state["moved_aside"]:
        assert Path(moved).exists() and moved.endswith(".aside")
    assert read_predictions(path).empty
    assert kept  # the bad one is still there, under its new name
    log_check.inspect(path).close()


def test_a_missing_log_is_created_whole_and_a_sound_one_kept(tmp_path: Path) -> None:
    path = tmp_path / "new" / "inference.sqlite"
    state = log_check.open_log(path)
    assert state["created"] and path.stat().st_size > 0
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp left
    sound_log(path, requests=5)
    state = log_check.open_log(path)
    assert not state["created"] and len(read_predictions(path)) == 15


def test_a_log_from_before_versions_and_request_errors_is_adopted(tmp_path: Path) -> None:
    path = sound_log(tmp_path / "inference.sqlite", requests=4)
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE errors; PRAGMA user_version=0;")
    conn.close()
    log_check.open_log(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT count(*) FROM errors").fetchone()[0] == 0
    conn.close()
    assert len(read_predictions(path)) == 12


def test_a_log_from_a_newer_loopline_or_another_program_is_refused(tmp_path: Path) -> None:
    path = sound_log(tmp_path / "inference.sqlite", requests=1)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(log_check.BadLog, match="newer than this loopline"):
        log_check.open_log(path)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE invoices (id INTEGER)").connection.close()
    with pytest.raises(log_check.BadLog, match="is not an inference log"):
        log_check.open_log(other)


def test_the_spool_is_replayed_once_at_start(tmp_path: Path) -> None:
    path = sound_log(tmp_path / "inference.sqlite", requests=2)
    row = ("spooled", 5.0, "v1", 1, '[{"Age": 30}]', '["good"]', "[[0.2, 0.8]]",
           '["bad", "good"]', 0.5, None, None, None)
    spool.append(path, {"requests": [row], "feedback": [("spooled", 0, "bad", 6.0)],
                        "errors": [(7.0, "/predict", 400, "v1")]})
    with open(spool.path_of(path), "ab") as f:
        f.write(b'{"k": "requests", "r": ["torn')  # a crash mid-append
    assert spool.pending(path) == 4
    state = log_check.open_log(path)
    assert (state["replayed"], state["unreadable"]) == (3, 1)
    assert not spool.path_of(path).exists() and spool.pending(path) == 0
    df = read_predictions(path)
    assert df[df.request_id == "spooled"]["label"].tolist() == ["bad"]
    assert log_check.open_log(path)["replayed"] == 0  # not twice
