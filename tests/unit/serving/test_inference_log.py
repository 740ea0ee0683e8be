"""The inference log file (serving/inference_log.py): its readers on a file that is not sound."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopline.core.errors import LooplineError
from loopline.serving import inference_log
from tests.helpers.logs import DAMAGE, sound_log


@pytest.mark.parametrize("name", ["garbled header", "garbled pages", "truncated"])
def test_a_damaged_log_is_one_error_naming_it_not_a_traceback(name: str, tmp_path: Path) -> None:
    path = sound_log(tmp_path / "logs" / "inference.sqlite", requests=50)
    DAMAGE[name][0](path)
    with pytest.raises(LooplineError, match=f"inference log {path} cannot be read"):
        inference_log.read_predictions(path)
    if name == "garbled header":  # no table can be read at all
        with pytest.raises(LooplineError, match=f"inference log {path} cannot be read"):
            inference_log.read_request_errors(path)


def test_the_writer_is_still_found_where_it_was() -> None:
    from loopline.serving.log_writer import InferenceLog

    assert inference_log.InferenceLog is InferenceLog
    with pytest.raises(AttributeError):
        inference_log.NoSuchThing  # noqa: B018


def test_insert_stores_what_executemany_stores_in_chunks_replacing_in_order(tmp_path: Path) -> None:
    n = inference_log.INSERT_ROWS * 2 + 5  # two full statements and a remainder
    requests = [(f"r{i % (n - 3)}", 1000.0 + i, "v1", 1, '[{"Age": 30}]', '["good"]',
                 "[[0.2,0.8]]", '["bad","good"]', float(i), None, None, None) for i in range(n)]
    feedback = [("r1", 0, "bad", 5.0), ("r1", 0, "good", 6.0), ("r2", 0, "bad", 7.0)]
    errors = [(1.0 + i, "/predict", 400 + i % 3, None if i % 2 else "v1") for i in range(70)]
    tables = {}
    for how in ("executemany", "insert"):
        conn = inference_log.connect(tmp_path / f"{how}.sqlite")
        with conn:
            for kind, rows in (("requests", requests), ("feedback", feedback), ("errors", errors)):
                if how == "insert":
                    inference_log.insert(conn, kind, rows)
                else:
                    conn.executemany(inference_log.INSERTS[kind], rows)
        tables[how] = [conn.execute(f"SELECT *, typeof(ts) FROM {t} ORDER BY rowid").fetchall()
                       for t in ("requests", "feedback", "errors")]
        conn.close()
    assert tables["insert"] == tables["executemany"]
    got = tables["insert"]
    assert len(got[0]) == n - 3 and len(got[1]) == 2 and len(got[2]) == 70
    assert dict((r[0], r[1]) for r in got[0])["r0"] == 1000.0 + n - 3  # the later row won
    assert ("r1", 0, "good", 6.0, "real") in got[1]
