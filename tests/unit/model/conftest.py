"""Fixtures of the model layer's tests."""

from __future__ import annotations

import pytest

from tests.helpers.model_data import model_frames


@pytest.fixture(scope="module")
def frames() -> dict[str, object]:
    return model_frames()
