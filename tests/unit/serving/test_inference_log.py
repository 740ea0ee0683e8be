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
