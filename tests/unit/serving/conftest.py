"""moto's S3 on 127.0.0.1 for the serving tests that ship to or read from a store."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.helpers.s3 import S3, moto_s3


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with moto_s3() as server:
        yield server


@pytest.fixture()
def s3_env(s3: S3, monkeypatch: pytest.MonkeyPatch) -> S3:
    """The server, with this process's AWS settings those of :meth:`S3.env` only."""
    set_aws_env(monkeypatch, s3.env())
    return s3


def set_aws_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """``env`` in place of every AWS_* variable of the environment."""
    for name in [k for k in os.environ if k.upper().startswith("AWS_")]:
        monkeypatch.delenv(name)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
