"""Every registry test tags and commits as "registry tests" (see tests/unit/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _git_identity(registry_identity: None) -> None:
    pass
