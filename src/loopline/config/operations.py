"""The typed schema of what runs after the pipeline: registry, serving, monitoring and the
simulated loop (conf/ groups serve, monitor, simulate; ``registry`` in conf/config.yaml).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from loopline.config.pipeline import Strict
from loopline.core.layout import ALERTS_DEFAULT, INFERENCE_LOG_DEFAULT, MONITOR_HISTORY_DEFAULT
from loopline.core.names import (
    DURATION_PATTERN,
    LIVE_METRICS,
    check_known,
    check_name,
    duration_seconds,
)


class RegistryConfig(Strict):
    """Stages a version can be assigned to (Git tags ``<artifact>#<stage>#<n>``)."""

    stages: list[str] = ["staging", "prod"]

    @property
    def serving_stage(self) -> str:
        """The stage a service follows and monitoring acts on: prod, else the last stage."""
        return "prod" if "prod" in self.stages else self.stages[-1]

    @field_validator("stages")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for name in v:
            check_name(name, "stage name")
        if len(set(v)) != len(v) or not v:
            raise ValueError("stages must be a non-empty list without repeats")
        return v


# ------------------------------------------------------------------------ serve


class InferenceLogConfig(Strict):
    """The inference log: an append-only SQLite file that monitoring reads."""

    enabled: bool = True
    path: str = INFERENCE_LOG_DEFAULT
    flush_interval: float = Field(0.2, gt=0.0, le=60.0)
    flush_rows: int = Field(2000, ge=1, le=1_000_000)


class ServeConfig(Strict):
    """The BentoML service: which model, where, how big a request may be."""

    model: str | None = None
    shadow: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=1, le=65535)
    workers: int = Field(2, ge=1, le=64)
    threads: int = Field(1, ge=1, le=64)
    max_batch: int = Field(1000, ge=1, le=1_000_000)
    max_body_mb: float = Field(16.0, gt=0.0, le=4096.0)
    timeout: int = Field(30, ge=1, le=3600)
    reload_poll: float = Field(0.5, gt=0.0, le=60.0)
    admin_token_env: str = Field("LOOPLINE_ADMIN_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    log: InferenceLogConfig = InferenceLogConfig()
    image_base: str | None = None


# ---------------------------------------------------------------------- monitor


class Band(Strict):
    """RAG thresholds of one figure: AMBER past ``amber``, RED past ``red``.

    For a figure where higher is better (ROC AUC) ``red < amber`` and "past" means below;
    where lower is better (drift share, missing rate) ``red > amber`` and it means above.
    """

    amber: float
    red: float

    @property
    def higher_is_better(self) -> bool:
        return self.red < self.amber

    def status(self, value: float | None) -> str | None:
        if value is None or value != value:
            return None
        if self.higher_is_better:
            return "RED" if value < self.red else "AMBER" if value < self.amber else "GREEN"
        return "RED" if value > self.red else "AMBER" if value > self.amber else "GREEN"


class Range(Strict):
    """A permissible range: RED outside [low, high], AMBER within ``margin`` of either end."""

    low: float | None = None
    high: float | None = None
    margin: float = Field(0.0, ge=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low is None and self.high is None:
            raise ValueError("a range needs low, high or both")
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"range low {self.low} must be below high {self.high}")
        return self

    def status(self, value: float | None) -> str | None:
        if value is None or value != value:
            return None
        lo = -math.inf if self.low is None else self.low
        hi = math.inf if self.high is None else self.high
        if value < lo or value > hi:
            return "RED"
        return "AMBER" if value < lo + self.margin or value > hi - self.margin else "GREEN"

    def describe(self) -> str:
        lo = "-∞" if self.low is None else f"{self.low:g}"
        hi = "∞" if self.high is None else f"{self.high:g}"
        return f"range [{lo}, {hi}]" + (f", AMBER within {self.margin:g} of an end"
                                        if self.margin else "")


class SliceGapTarget(Strict):
    """Governance: the largest gap of a live labelled metric between the groups of a column."""

    columns: list[str] = Field(min_length=1)
    metric: Literal["accuracy", "positive_rate", "error_rate"] = "accuracy"
    min_records: int = Field(30, ge=1)   # groups with fewer labelled records are left out
    band: Band = Band(amber=0.05, red=0.10)


class CostTarget(Strict):
    """Cost per 1,000 predictions from the model's compute seconds at a price per CPU-hour."""

    cpu_hour_price: float = Field(gt=0.0)
    per_1k: Band


class Targets(Strict):
    """Production targets (SLOs), graded per window like the other figures (null: not graded).

    latency: the model's time per request in milliseconds, as the service logs it;
    availability: the share of prediction requests not answered 5xx (4xx are the client's).
    """

    latency_p50_ms: Band | None = None
    latency_p99_ms: Band | None = None
    availability: Band | None = None
    accuracy: Range | None = None
    slice_gap: SliceGapTarget | None = None
    cost: CostTarget | None = None


class AlertConfig(Strict):
    statuses: list[Literal["AMBER", "RED"]] = ["AMBER", "RED"]
    file: str | None = ALERTS_DEFAULT
    webhook_env: str = Field("LOOPLINE_ALERT_WEBHOOK", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    retries: int = Field(3, ge=0, le=20)
    timeout: float = Field(5.0, gt=0.0, le=120.0)


class MonitorConfig(Strict):
    """`loopline monitor`: windows over the inference log, RAG bands, alerts."""

    window: str = Field("1d", pattern=DURATION_PATTERN)
    windows: int = Field(7, ge=1, le=10_000)
    min_rows: int = Field(100, ge=1)
    min_labels: int = Field(50, ge=1)
    drift_methods: dict[str, str] = {}
    drift_threshold: float | None = Field(None, gt=0.0)
    performance: dict[str, Band] = {"roc_auc": Band(amber=0.80, red=0.70)}
    drift_share: Band = Band(amber=0.30, red=0.60)
    missing_rate: Band = Band(amber=0.30, red=0.60)
    prediction_drift: Band = Band(amber=0.10, red=0.30)
    error_rate: Band | None = Band(amber=0.05, red=0.20)
    min_requests: int = Field(20, ge=1)
    constant_share: float = Field(0.99, gt=0.5, le=1.0)
    history: str = MONITOR_HISTORY_DEFAULT
    html_max_rows: int = Field(20_000, ge=100)
    alerts: AlertConfig = AlertConfig()
    targets: Targets = Targets()

    @property
    def window_seconds(self) -> int:
        return duration_seconds(self.window)

    @model_validator(mode="after")
    def _checks(self) -> MonitorConfig:
        from loopline.core.names import check_method

        for column, method in self.drift_methods.items():
            check_method(method, column)  # the column's kind is checked with the schema
        check_known(self.performance, LIVE_METRICS, "monitor.performance metric")
        if self.window_seconds == 0:
            raise ValueError("monitor.window must be longer than 0")
        return self


class SimulateDrift(Strict):
    """How the simulated stream drifts: the share of records from the new regime per step."""

    start: int = Field(4, ge=1)            # first step with drifted records
    step: float = Field(0.1, gt=0.0, le=1.0)  # added share per step
    max: float = Field(0.45, gt=0.0, le=1.0)  # the share stops growing here


class SimulateConcept(Strict):
    """The new regime's labels: the positive class iff ``column`` is above ``above``."""

    column: str
    above: float


class SimulateConfig(Strict):
    """`loopline simulate`: a drifting stream against a live local service.

    Records of the new regime have their ``shift`` columns multiplied (covariate drift) and
    their label set by ``concept`` (concept drift), with ``label_noise`` of labels flipped.
    With ``shift`` empty and no ``concept``, the three most important numeric features
    (from the first run's permutation importance) are shifted by 1.3 and the first of them
    carries the concept (above the 70th percentile of the shifted held-back rows).
    ``overrides`` are config values for the sandbox only (e.g. a larger
    ``evaluate.min_slice_size``, as the sandbox trains on fewer rows).
    """

    steps: int = Field(18, ge=8, le=500)
    records_per_step: int = Field(250, ge=20, le=100_000)
    requests_per_step: int = Field(10, ge=1, le=10_000)
    label_delay: int = Field(1, ge=0, le=10)       # steps until a record's label arrives
    window_steps: int = Field(4, ge=1, le=100)     # the monitor's window, in steps
    holdout: float = Field(0.25, gt=0.05, lt=0.8)  # share of the data held back as future traffic
    drift: SimulateDrift = SimulateDrift()
    shift: dict[str, float] = {}
    concept: SimulateConcept | None = None
    label_noise: float = Field(0.05, ge=0.0, le=0.5)
    bad_model_after: int = Field(3, ge=1)  # steps after the retrained model, the faulty one is forced
    overrides: dict[str, Any] = {}  # config values for the sandbox only (merged over conf/)

    @model_validator(mode="after")
    def _checks(self) -> SimulateConfig:
        if self.label_delay >= self.window_steps:
            raise ValueError("simulate.label_delay must be shorter than simulate.window_steps, "
                             "or no window ever has labels")
        for col, factor in self.shift.items():
            if not 0.0 < factor <= 100.0:
                raise ValueError(f"simulate.shift.{col}: factor {factor} outside (0, 100]")
        return self

