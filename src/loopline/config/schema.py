"""Configuration: compose conf/ with Hydra into params.yaml, and validate it.

conf/ is the source of truth; params.yaml is its composed result, committed, and the file
DVC tracks. DVC composes Hydra only on ``dvc exp run``, so loopline composes it itself and
writes exactly what DVC's Hydra integration writes (``OmegaConf.to_yaml`` of the resolved
config), so ``loopline params model=rf`` and ``dvc exp run -S model=rf`` agree byte for byte.

Every value is validated against the typed schemas below before any stage runs; a bad
value is reported as one line naming its key path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loopline.core.errors import LooplineError

PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"
CONF_NAME = "config"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- data


class ColumnRule(_Strict):
    """What a column may hold. ``type`` decides how the model sees it."""

    type: Literal["integer", "float", "category", "boolean"]
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ColumnRule:
        if self.type == "category" and (self.min is not None or self.max is not None):
            raise ValueError("min/max apply to numeric columns, not to type 'category'")
        if self.type != "category" and self.categories is not None:
            raise ValueError(f"categories apply to type 'category', not to type {self.type!r}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    @property
    def numeric(self) -> bool:
        return self.type in ("integer", "float", "boolean")


class Schema(_Strict):
    columns: dict[str, ColumnRule]
    allow_extra_columns: bool = False

    @field_validator("columns")
    @classmethod
    def _not_empty(cls, v: dict[str, ColumnRule]) -> dict[str, ColumnRule]:
        if not v:
            raise ValueError("the schema declares no columns")
        return v


class Split(_Strict):
    test_size: float = Field(0.2, gt=0.0, lt=1.0)
    stratify: bool = True
    seed: int = 42


class ValidateConfig(_Strict):
    max_missing_rate: float = Field(0.30, ge=0.0, le=1.0)
    fail_on_missing_alarm: bool = False
    show_rows: int = Field(5, ge=1, le=100)


class DataConfig(_Strict):
    name: str
    source: str
    format: Literal["auto", "csv", "parquet"] = "auto"
    target: str
    positive_class: str
    id_column: str | None = None
    order_column: str | None = None
    split: Split = Split()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    schema_: Schema = Field(alias="schema")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _target_in_schema(self) -> DataConfig:
        cols = self.schema_.columns
        if self.target not in cols:
            raise ValueError(f"target {self.target!r} is not a column of data.schema")
        rule = cols[self.target]
        if rule.type != "category":
            raise ValueError(f"target {self.target!r} must have type 'category' (classification)")
        if rule.categories is not None and self.positive_class not in rule.categories:
            raise ValueError(
                f"positive_class {self.positive_class!r} is not one of the target's "
                f"categories {rule.categories}"
            )
        for key in ("id_column", "order_column"):
            col = getattr(self, key)
            if col is not None and col not in cols:
                raise ValueError(f"{key} {col!r} is not a column of data.schema")
        return self

    @property
    def schema(self) -> Schema:
        return self.schema_

    @property
    def validation(self) -> ValidateConfig:
        return self.validate_

    def feature_columns(self, drop: list[str] | tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
        """Numeric and categorical feature columns, in schema order."""
        skip = {self.target, self.id_column, self.order_column, *drop}
        numeric, categorical = [], []
        for name, rule in self.schema_.columns.items():
            if name in skip:
                continue
            (numeric if rule.numeric else categorical).append(name)
        return numeric, categorical


# ----------------------------------------------------------------------- features


class FeaturesConfig(_Strict):
    numeric_imputer: Literal["mean", "median", "knn"] = "median"
    knn_neighbors: int = Field(5, ge=1, le=100)
    categorical_imputer: Literal["most_frequent", "missing"] = "most_frequent"
    scale: Literal["standard", "none", "auto"] = "auto"
    drop: list[str] = []


# -------------------------------------------------------------------------- model


class Distribution(_Strict):
    """A random-search distribution over one hyper-parameter."""

    dist: Literal["uniform", "loguniform", "randint"]
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Distribution:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.dist == "loguniform" and self.low <= 0:
            raise ValueError("loguniform needs low > 0")
        return self


SpaceValue = Annotated[list[Any], Field(min_length=1)] | Distribution


class ModelConfig(_Strict):
    name: str
    estimator: dict[str, Any]
    search_space: dict[str, SpaceValue] = {}

    @field_validator("estimator")
    @classmethod
    def _has_target(cls, v: dict[str, Any]) -> dict[str, Any]:
        target = v.get("_target_")
        if not isinstance(target, str) or not re.fullmatch(r"[A-Za-z_][\w.]*\.[A-Za-z_]\w*", target):
            raise ValueError("needs '_target_': a dotted import path such as "
                             "sklearn.linear_model.LogisticRegression")
        return v


class SearchConfig(_Strict):
    method: Literal["grid", "random", "halving", "none"] = "random"
    n_iter: int = Field(20, ge=1)
    cv: int = Field(5, ge=2, le=50)
    scoring: str = "roc_auc"
    n_jobs: int = Field(-1, ge=-1)
    halving_factor: int = Field(3, ge=2)
    backend: Literal["local", "dask"] = "local"
    dask_scheduler: str | None = None

    @model_validator(mode="after")
    def _dask_needs_scheduler(self) -> SearchConfig:
        if self.n_jobs == 0:
            raise ValueError("n_jobs must be -1 (all cores) or a positive count, not 0")
        if self.backend == "dask" and not self.dask_scheduler:
            raise ValueError("backend 'dask' needs dask_scheduler (e.g. tcp://10.0.0.5:8786)")
        return self


# --------------------------------------------------------------- evaluate, export


class PermutationConfig(_Strict):
    n_repeats: int = Field(5, ge=1, le=100)
    scoring: str = "roc_auc"


class EvaluateConfig(_Strict):
    slice_column: str | None = None
    min_slice_size: int = Field(30, ge=1)
    permutation: PermutationConfig = PermutationConfig()


class ExportConfig(_Strict):
    parity_atol: float = Field(1e-4, gt=0.0, le=0.5)
    parity_show: int = Field(5, ge=1, le=50)


# --------------------------------------------------------------------------- gate

GATE_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
SLICE_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
DRIFT_METHODS = ("ks", "chisquare", "z", "wasserstein", "psi", "jensenshannon", "kl_div",
                 "hellinger", "TVD", "anderson", "cramer_von_mises", "mannw", "t_test",
                 "energy_dist", "epps_singleton", "fisher_exact", "g_test", "empirical_mmd")


def _known(keys, allowed: tuple[str, ...], what: str) -> None:
    for k in keys:
        if k not in allowed:
            raise ValueError(f"unknown {what} {k!r}: expected one of {', '.join(allowed)}")


class ChampionCheck(_Strict):
    metrics: list[str] = []
    tolerance: float = Field(0.02, ge=0.0, le=1.0)
    stage: str = "prod"

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: list[str]) -> list[str]:
        _known(v, GATE_METRICS, "metric")
        return v


class SliceChecks(_Strict):
    min: dict[str, float] = {}
    max_gap: dict[str, float] = {}

    @model_validator(mode="after")
    def _metrics(self) -> SliceChecks:
        _known(self.min, SLICE_METRICS, "slice metric")
        _known(self.max_gap, SLICE_METRICS, "slice metric")
        return self


class DriftCheck(_Strict):
    num_method: str = "wasserstein"
    cat_method: str = "chisquare"
    per_column: dict[str, str] = {}
    threshold: float | None = Field(None, gt=0.0)
    max_share: float | None = Field(0.3, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _methods(self) -> DriftCheck:
        _known([self.num_method, self.cat_method, *self.per_column.values()], DRIFT_METHODS, "drift method")
        return self


class GateConfig(_Strict):
    """Explicit one-sided checks; an empty gate is a configuration error, never a pass."""

    min: dict[str, float] = {}
    max: dict[str, float] = {}
    champion: ChampionCheck = ChampionCheck()
    slices: SliceChecks = SliceChecks()
    drift: DriftCheck = DriftCheck()
    parity: bool = True

    @model_validator(mode="after")
    def _has_thresholds(self) -> GateConfig:
        _known(self.min, GATE_METRICS, "metric")
        _known(self.max, GATE_METRICS, "metric")
        if not self.min and not self.max:
            raise ValueError("no thresholds configured: set at least one absolute minimum "
                             "(gate.min, e.g. roc_auc: 0.8) or maximum (gate.max); "
                             "an empty gate would pass anything")
        return self


# ----------------------------------------------------------------------- registry


class RegistryConfig(_Strict):
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
            if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
                raise ValueError(f"stage name {name!r} must be lower-case letters, digits and '-'")
        if len(set(v)) != len(v) or not v:
            raise ValueError("stages must be a non-empty list without repeats")
        return v


# ------------------------------------------------------------------------ serve


class InferenceLogConfig(_Strict):
    """The inference log: an append-only SQLite file that monitoring reads."""

    enabled: bool = True
    path: str = "logs/inference.sqlite"
    flush_interval: float = Field(0.2, gt=0.0, le=60.0)
    flush_rows: int = Field(2000, ge=1, le=1_000_000)


class ServeConfig(_Strict):
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


class Band(_Strict):
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


class AlertConfig(_Strict):
    statuses: list[Literal["AMBER", "RED"]] = ["AMBER", "RED"]
    file: str | None = "reports/alerts.jsonl"
    webhook_env: str = Field("LOOPLINE_ALERT_WEBHOOK", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    retries: int = Field(3, ge=0, le=20)
    timeout: float = Field(5.0, gt=0.0, le=120.0)


class MonitorConfig(_Strict):
    """`loopline monitor`: windows over the inference log, RAG bands, alerts."""

    window: str = Field("1d", pattern=r"^\d+[smhd]$")
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
    history: str = "reports/monitor_history.jsonl"
    html_max_rows: int = Field(20_000, ge=100)
    alerts: AlertConfig = AlertConfig()

    @property
    def window_seconds(self) -> int:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[self.window[-1]]
        return int(self.window[:-1]) * unit

    @model_validator(mode="after")
    def _checks(self) -> MonitorConfig:
        _known(self.drift_methods.values(), DRIFT_METHODS, "drift method")
        known = {"roc_auc", "accuracy", "f1", "precision", "recall", "brier", "log_loss"}
        for name in self.performance:
            if name not in known:
                raise ValueError(f"monitor.performance: unknown metric {name!r} "
                                 f"(known: {', '.join(sorted(known))})")
        if self.window_seconds == 0:
            raise ValueError("monitor.window must be longer than 0")
        return self


class SimulateDrift(_Strict):
    """How the simulated stream drifts: the share of records from the new regime per step."""

    start: int = Field(4, ge=1)            # first step with drifted records
    step: float = Field(0.1, gt=0.0, le=1.0)  # added share per step
    max: float = Field(0.45, gt=0.0, le=1.0)  # the share stops growing here


class SimulateConcept(_Strict):
    """The new regime's labels: the positive class iff ``column`` is above ``above``."""

    column: str
    above: float


class SimulateConfig(_Strict):
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


# ------------------------------------------------------------------------ paths


class Paths(_Strict):
    raw: str = "data/raw/data.parquet"
    prepared: str = "data/prepared"
    models: str = "models"
    reports: str = "reports"


class Params(_Strict):
    """The whole of params.yaml."""

    seed: int = 42
    artifact: str = Field(pattern=r"^[a-z][a-z0-9-]*[a-z0-9]$")
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
    monitor: MonitorConfig = MonitorConfig()
    simulate: SimulateConfig = SimulateConfig()

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
        if self.gate.champion.stage not in self.registry.stages:
            raise ValueError(f"gate.champion.stage {self.gate.champion.stage!r} is not one of "
                             f"registry.stages {self.registry.stages}")
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


# ------------------------------------------------------------------- functions


def find_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The loopline repo containing ``start``: the nearest dir with dvc.yaml and conf/.

    Raises:
        LooplineError: when no parent directory is a loopline repo.
    """
    here = Path(start or os.getcwd()).resolve()
    for d in (here, *here.parents):
        if (d / "dvc.yaml").is_file() and (d / CONF_DIR / f"{CONF_NAME}.yaml").is_file():
            return d
    raise LooplineError(
        f"not a loopline repo: no dvc.yaml and {CONF_DIR}/{CONF_NAME}.yaml in {here} or any "
        "parent (run `loopline init DIR` to make one)"
    )


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


def compose(root: Path, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """Compose conf/ with Hydra overrides; return the YAML text DVC would write."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(root / CONF_DIR), version_base=None):
            cfg = hydra_compose(config_name=CONF_NAME, overrides=list(overrides))
        OmegaConf.resolve(cfg)
        return OmegaConf.to_yaml(cfg)
    except (HydraException, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LooplineError(f"cannot compose {CONF_DIR}/: {first}") from None
    finally:
        GlobalHydra.instance().clear()


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


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted key paths where two parsed configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            out += diff_keys(a.get(key, _MISSING), b.get(key, _MISSING), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


_MISSING = object()


def _is_classifier(cls: type) -> bool:
    """A scikit-learn-compatible classifier with predict_proba (clusterers have it too)."""
    if not (hasattr(cls, "fit") and hasattr(cls, "predict_proba")):
        return False
    try:
        from sklearn.base import is_classifier

        return bool(is_classifier(cls()))
    except Exception:  # needs constructor args, or not sklearn: trust its declared type
        return getattr(cls, "_estimator_type", None) == "classifier"


def check_estimator(model: ModelConfig) -> type:
    """Import the estimator class named by ``_target_`` and check it is a classifier."""
    import importlib

    target = model.estimator["_target_"]
    module_name, _, cls_name = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, cls_name)
    except (ImportError, AttributeError):
        raise LooplineError(
            f"unknown estimator in model.estimator._target_: {target!r} cannot be imported"
        ) from None
    if not isinstance(cls, type) or not _is_classifier(cls):
        raise LooplineError(
            f"model.estimator._target_ {target!r} is not a classifier with fit and predict_proba"
        )
    import inspect

    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    for key in [k for k in model.estimator if k != "_target_"] + list(model.search_space):
        if key not in accepted:
            raise LooplineError(
                f"model: {cls_name} has no parameter {key!r} (it takes: {', '.join(sorted(accepted))})"
            )
    return cls
