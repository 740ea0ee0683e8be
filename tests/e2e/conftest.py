"""Every test under tests/e2e is marked slow by where it is: `-m "not slow"` runs unit only."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:  # the hook sees the whole session's items, not only this folder's
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.slow)
