"""The reference's conf/ composed and validated, cached (Hydra takes a few hundred ms a time)."""

from __future__ import annotations

import functools

import pytest
import yaml

from loopline.config.compose import compose
from loopline.config.params import Params, validate_params
from loopline.core.errors import LooplineError
from tests.helpers import REPO


@functools.cache
def _composed_text(overrides: tuple[str, ...]) -> str:
    return compose(REPO, list(overrides))


def composed(overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Parsed composition (cached: Hydra takes a few hundred ms per compose)."""
    return yaml.safe_load(_composed_text(tuple(overrides)))


def params_for(overrides: list[str] | tuple[str, ...] = ()) -> Params:
    return validate_params(composed(overrides))


def error_of(data: dict) -> str:
    with pytest.raises(LooplineError) as info:
        validate_params(data)
    return str(info.value)
