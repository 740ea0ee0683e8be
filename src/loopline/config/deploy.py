"""The typed schema of a rollout (conf group ``deploy``): how a promotion to the serving
stage reaches live traffic.

``cutover`` (the default) switches all traffic at once, as ``promote`` always did.
``canary`` and ``blue_green`` record a rollout instead (:mod:`loopline.registry.rollout`):
the service routes ``steps[i]`` % of traffic to the candidate (:mod:`loopline.serving.split`)
and each step must see ``min_records`` predictions and ``min_labels`` labels and meet
``criteria`` before it advances; past the last step the candidate becomes the stage's version.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from loopline.config.pipeline import Strict

STRATEGIES = ("cutover", "canary", "blue_green")


class DeployCriteria(Strict):
    """What a step must show on live traffic: the candidate no worse than the champion on
    the live labelled metric by more than ``margin`` (one-sided, at ``confidence``), an
    error rate at most ``max_error_rate``, a p99 latency at most ``p99_ms`` (null: not judged)."""

    margin: float = Field(0.05, ge=0.0, le=1.0)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    max_error_rate: float = Field(0.01, ge=0.0, le=1.0)
    p99_ms: float | None = Field(None, gt=0.0)


class DeployConfig(Strict):
    """The rollout plan of the serving stage (``deploy`` in params.yaml)."""

    strategy: Literal["cutover", "canary", "blue_green"] = "cutover"
    steps: list[float] = [1.0, 5.0, 25.0, 50.0]
    min_records: int = Field(1000, ge=1)
    min_labels: int = Field(500, ge=0)
    criteria: DeployCriteria = DeployCriteria()

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("steps must name at least one share of traffic (in %)")
        for a in v:
            if not 0.0 < a <= 100.0:
                raise ValueError("a step is a share of traffic in % (0 < step <= 100)")
        if any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError("steps must increase")
        return v

    @property
    def progressive(self) -> bool:
        """True when a promotion is a rollout in steps, not a cutover."""
        return self.strategy != "cutover"

    def plan(self) -> dict:
        """The plan as recorded in a rollout tag's message."""
        return self.model_dump()


def load_deploy(data: object, source: str = "params.yaml") -> DeployConfig:
    """``data`` (the ``deploy`` mapping, or None) as a :class:`DeployConfig`.

    Raises:
        LooplineError: one line naming the bad key.
    """
    from pydantic import ValidationError

    from loopline.config.params import _format_validation
    from loopline.core.errors import LooplineError

    if data is None:
        return DeployConfig()
    if not isinstance(data, dict):
        raise LooplineError(f"invalid config in {source}: deploy must be a mapping")
    try:
        return DeployConfig.model_validate(data)
    except ValidationError as err:
        raise LooplineError(_format_validation(err, source).replace(
            f"{source}: ", f"{source}: deploy.", 1)) from None
