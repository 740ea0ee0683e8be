"""params.yaml: the whole configuration, read and validated in one place.

Every value is validated against the typed schemas (:mod:`loopline.config.pipeline`,
:mod:`loopline.config.operations`) before any stage runs; a bad value is reported as one
line naming its key path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, field_validator, model_validator

from loopline.config.deploy import DeployConfig
from loopline.config.operations import MonitorConfig, RegistryConfig, ServeConfig, SimulateConfig
from loopline.config.pipeline import (
    DataConfig,
    Distribution,
    EvaluateConfig,
    ExportConfig,
    FeaturesConfig,
    GateConfig,
    ModelConfig,
    SearchConfig,
    Strict,
)
from loopline.core.errors import LooplineError
from loopline.core.layout import (
    MODELS_DEFAULT,
    PARAMS_FILE,
    PREPARED_DEFAULT,
    RAW_DEFAULT,
    REPORTS_DEFAULT,
)
from loopline.core.names import check_name

# ------------------------------------------------------------------------ paths


class Paths(Strict):
    """Where the stages write (dvc.yaml reads the same keys); file names: core.layout."""

    raw: str = RAW_DEFAULT
    prepared: str = PREPARED_DEFAULT
    models: str = MODELS_DEFAULT
    reports: str = REPORTS_DEFAULT


class Params(Strict):
    """The whole of params.yaml."""

    seed: int = 42
    artifact: str
    paths: Paths = Paths()
    data: DataConfig
    features: FeaturesConfig = FeaturesConfig()
    model: ModelConfig
    search: SearchConfig = SearchConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    export: ExportConfig = ExportConfig()
    gate: GateConfig
    registry: RegistryConfig = RegistryConfig()
    serve: ServeConfig = ServeConfig()
    deploy: DeployConfig = DeployConfig()
    monitor: MonitorConfig = MonitorConfig()
    simulate: SimulateConfig = SimulateConfig()

    @field_validator("artifact")
    @classmethod
    def _artifact(cls, v: str) -> str:
        return check_name(v, "artifact")

    @model_validator(mode="after")
    def _cross_checks(self) -> Params:
        cols = self.data.schema_.columns
        for col in self.features.drop:
            if col not in cols:
                raise ValueError(f"features.drop names {col!r}, which is not a column of data.schema")
        sc = self.evaluate.slice_column
        if sc is not None and sc not in cols:
            raise ValueError(f"evaluate.slice_column {sc!r} is not a column of data.schema")
        numeric, categorical = self.data.feature_columns(self.features.drop)
        if not numeric and not categorical:
            raise ValueError("no feature columns are left after removing target, id and drop")
        for col in self.gate.drift.per_column:
            if col not in numeric + categorical:
                raise ValueError(f"gate.drift.per_column names {col!r}, which is not a feature column")
        from loopline.core.names import check_method

        for col, method in self.monitor.drift_methods.items():
            if col not in numeric + categorical:
                raise ValueError(f"monitor.drift_methods names {col!r}, which is not a feature column")
            try:
                check_method(method, col, numeric=col in numeric)
            except ValueError as err:
                raise ValueError(f"monitor.drift_methods.{col}: {err}") from None
        if self.gate.champion.stage not in self.registry.stages:
            raise ValueError(f"gate.champion.stage {self.gate.champion.stage!r} is not one of "
                             f"registry.stages {self.registry.stages}")
        if self.gate.latency.p99_ms == "target" and self.monitor.targets.latency_p99_ms is None:
            raise ValueError("gate.latency.p99_ms is 'target' but monitor.targets.latency_p99_ms "
                             "is not set: agree a latency target (conf/monitor) or give a number")
        if (self.gate.slices.min or self.gate.slices.max_gap) and self.evaluate.slice_column is None:
            raise ValueError("gate.slices needs evaluate.slice_column")
        sim = self.simulate
        for col in [*sim.shift, *([sim.concept.column] if sim.concept else [])]:
            if col not in numeric:
                raise ValueError(f"simulate names {col!r}, which is not a numeric feature column")
        if self.search.method == "grid":
            for key, value in self.model.search_space.items():
                if isinstance(value, Distribution):
                    raise ValueError(f"model.search_space.{key}: grid search needs a list of "
                                     f"values, not a {value.dist} distribution")
        return self


def _format_validation(err: ValidationError, source: str) -> str:
    parts: list[str] = []
    errors = err.errors()
    # a value that fits no member of a union (list or distribution): keep the closest match
    by_loc: dict[str, dict] = {}
    for e in errors:
        key = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and "[" in p))
        if key not in by_loc or by_loc[key]["type"] in ("list_type", "model_type", "dict_type"):
            by_loc[key] = e
    errors = list(by_loc.values())
    for e in errors[:3]:
        # drop pydantic's union/validator tags such as "list[any]" or "function-after[...]"
        loc = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and "[" in p))
        loc = loc.replace("validate_", "validate").replace("schema_", "schema")
        msg = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        shown = f" (got {value!r})" if e["type"] != "missing" and not isinstance(value, dict) else ""
        parts.append(f"{loc or '<root>'}: {msg}{shown}")
    more = len(errors) - len(parts)
    tail = f" (and {more} more)" if more > 0 else ""
    return f"invalid config in {source}: " + "; ".join(parts) + tail


def validate_params(data: Any, source: str = PARAMS_FILE) -> Params:
    """Validate a params mapping; raise a one-line :class:`LooplineError` naming the key."""
    if not isinstance(data, dict):
        raise LooplineError(f"invalid config in {source}: expected a mapping at the top level")
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise LooplineError(_format_validation(err, source)) from None


def revalidate(section: Any, key: str, **updates: Any) -> Any:
    """A config section with ``updates`` (e.g. command-line options) applied and checked again;
    a bad value is one line naming ``key.field``."""
    data = {**section.model_dump(by_alias=True), **{k: v for k, v in updates.items() if v is not None}}
    try:
        return type(section).model_validate(data)
    except ValidationError as err:
        msg = _format_validation(err, "the command line")
        raise LooplineError(msg.replace("the command line: ", f"the command line: {key}.", 1)) from None


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise LooplineError(f"{source} is not valid YAML: {str(err).splitlines()[0]}") from None


def load_params(root: Path) -> Params:
    """Read and validate params.yaml of the repo at ``root``."""
    path = root / PARAMS_FILE
    if not path.is_file():
        raise LooplineError(f"{PARAMS_FILE} is missing in {root}: run `loopline params` to compose it")
    return validate_params(parse_yaml(path.read_text(encoding="utf-8"), PARAMS_FILE))

