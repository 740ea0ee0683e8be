"""The typed schema of the pipeline's configuration: data, features, model, search,
evaluate, export and the gate (conf/ groups of the same names).

Allowed values are declared once (metric names and senses in :mod:`loopline.core.names`,
Evidently's drift tests below) and every validator derives from them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from loopline.core.errors import LooplineError
from loopline.core.names import GATE_METRICS, SLICE_METRICS, check_known


class Strict(BaseModel):
    """A config section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- data


class ColumnRule(Strict):
    """What a column may hold. ``type`` decides how the model sees it."""

    type: Literal["integer", "float", "category", "boolean"]
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    #: text that stands for a gap in a column of numbers (``?``, ``-``; ``""``: blank text).
    #: A CSV reader takes such a column as text, so the service takes its numbers as text too
    missing_values: list[str] | None = None

    @field_validator("missing_values")
    @classmethod
    def _markers(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        out = sorted({str(t).strip() for t in v})
        for token in out:
            try:
                float(token)
            except ValueError:
                continue
            raise ValueError(f"missing_values holds {token!r}, a number: list text that is not "
                             "a number (such as '?' or '-')")
        return out

    @model_validator(mode="after")
    def _consistent(self) -> ColumnRule:
        if self.type == "category" and (self.min is not None or self.max is not None):
            raise ValueError("min/max apply to numeric columns, not to type 'category'")
        if self.missing_values is not None and self.type not in ("integer", "float"):
            raise ValueError(f"missing_values apply to integer and float columns, not to type "
                             f"{self.type!r}")
        if self.missing_values is not None and not self.nullable:
            raise ValueError("missing_values make gaps: the column must be nullable")
        if self.type != "category" and self.categories is not None:
            raise ValueError(f"categories apply to type 'category', not to type {self.type!r}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    @property
    def numeric(self) -> bool:
        return self.type in ("integer", "float", "boolean")


class Schema(Strict):
    columns: dict[str, ColumnRule]
    allow_extra_columns: bool = False

    @field_validator("columns")
    @classmethod
    def _not_empty(cls, v: dict[str, ColumnRule]) -> dict[str, ColumnRule]:
        if not v:
            raise ValueError("the schema declares no columns")
        return v

    @property
    def missing_values(self) -> dict[str, list[str]]:
        """The placeholders of gaps per column of numbers that has any (``{"ca": ["?"]}``)."""
        return {name: rule.missing_values for name, rule in self.columns.items() if rule.missing_values}


class Split(Strict):
    """``random``: a seeded split by row id (stratified when asked); ``time``: the latest
    ``test_size`` of the rows (in ``order_column`` order) are the test split."""

    method: Literal["random", "time"] = "random"
    test_size: float = Field(0.2, gt=0.0, lt=1.0)
    stratify: bool = True
    seed: int = 42


class ValidateConfig(Strict):
    max_missing_rate: float = Field(0.30, ge=0.0, le=1.0)
    fail_on_missing_alarm: bool = False
    show_rows: int = Field(5, ge=1, le=100)


class DataConfig(Strict):
    name: str
    source: str
    format: Literal["auto", "csv", "parquet"] = "auto"
    target: str
    positive_class: str | None = None   # binary targets; multiclass metrics are macro averages
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
        if (rule.categories is not None and self.positive_class is not None
                and self.positive_class not in rule.categories):
            raise ValueError(
                f"positive_class {self.positive_class!r} is not one of the target's "
                f"categories {rule.categories}"
            )
        if self.positive_class is None and (rule.categories is None or len(rule.categories) <= 2):
            raise ValueError(f"positive_class is needed for the two-class target {self.target!r} "
                             "(the class recall, precision and ROC AUC are about)")
        if self.split.method == "time" and self.order_column is None:
            raise ValueError("split.method 'time' needs order_column (the column that orders "
                             "the rows in time)")
        for key in ("id_column", "order_column"):
            col = getattr(self, key)
            # row_id: the data's own, whose values ingest keeps as loopline's row ids
            if col is not None and col not in cols and (key, col) != ("id_column", "row_id"):
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


class FeaturesConfig(Strict):
    numeric_imputer: Literal["mean", "median", "knn"] = "median"
    knn_neighbors: int = Field(5, ge=1, le=100)
    categorical_imputer: Literal["most_frequent", "missing"] = "most_frequent"
    scale: Literal["standard", "none", "auto"] = "auto"
    drop: list[str] = []


# -------------------------------------------------------------------------- model


class Distribution(Strict):
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


class ModelConfig(Strict):
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


class SearchConfig(Strict):
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


class PermutationConfig(Strict):
    n_repeats: int = Field(5, ge=1, le=100)
    scoring: str = "roc_auc"


class EvaluateConfig(Strict):
    slice_column: str | None = None
    min_slice_size: int = Field(30, ge=1)
    permutation: PermutationConfig = PermutationConfig()


class ExportConfig(Strict):
    parity_atol: float = Field(1e-4, gt=0.0, le=0.5)
    parity_show: int = Field(5, ge=1, le=50)


# --------------------------------------------------------------------------- gate

# Evidently's per-column drift tests (evidently.legacy.calculations.stattests), which the
# gate's drift check runs: name -> whether its value is a p-value (drift when below the
# threshold) rather than a distance (drift at or above it).
EVIDENTLY_DRIFT_TESTS: dict[str, bool] = {
    "ks": True, "chisquare": True, "z": True, "anderson": True, "cramer_von_mises": True,
    "mannw": True, "t_test": True, "epps_singleton": True, "fisher_exact": True, "g_test": True,
    "empirical_mmd": True, "energy_dist": False, "wasserstein": False, "psi": False,
    "jensenshannon": False, "kl_div": False, "hellinger": False, "TVD": False}


class ChampionCheck(Strict):
    metrics: list[str] = []
    tolerance: float = Field(0.02, ge=0.0, le=1.0)
    stage: str = "prod"

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: list[str]) -> list[str]:
        check_known(v, GATE_METRICS, "metric")
        return v


class SliceChecks(Strict):
    min: dict[str, float] = {}
    max_gap: dict[str, float] = {}

    @model_validator(mode="after")
    def _metrics(self) -> SliceChecks:
        check_known(self.min, SLICE_METRICS, "slice metric")
        check_known(self.max_gap, SLICE_METRICS, "slice metric")
        return self


#: metrics the class-prior baseline has a meaningful value for (model/metrics.py)
BASELINE_METRICS = ("roc_auc", "log_loss", "accuracy", "brier")
#: the gate's default drift test: chosen per column by sample size (loopline.model.drift)
AUTO_DRIFT = "auto"


class DriftCheck(Strict):
    num_method: str = AUTO_DRIFT
    cat_method: str = AUTO_DRIFT
    per_column: dict[str, str] = {}
    threshold: float | None = Field(None, gt=0.0)
    significance: float = Field(0.01, gt=0.0, lt=0.5)
    max_share: float | None = Field(0.3, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _methods(self) -> DriftCheck:
        check_known([self.num_method, self.cat_method], [AUTO_DRIFT, *EVIDENTLY_DRIFT_TESTS],
                    "drift method")
        check_known(self.per_column.values(), EVIDENTLY_DRIFT_TESTS, "drift method")
        return self


class LatencyCheck(Strict):
    """The candidate's offline latency: ONNX Runtime answering one record per call (a batch
    of 1, as the service's ``/predict`` runs it), p99 over ``calls`` timed calls.

    ``p99_ms``: null = not checked; a number of milliseconds; or ``target``: the GREEN bound
    of the production target ``monitor.targets.latency_p99_ms``, so the gate and the monitor
    judge against the same agreed figure.
    """

    p99_ms: float | Literal["target"] | None = None
    calls: int = Field(500, ge=50, le=100_000)

    @field_validator("p99_ms", mode="before")
    @classmethod
    def _positive(cls, v: Any) -> Any:
        if v is None or v == "target":
            return v
        if isinstance(v, bool) or not isinstance(v, float | int) or v <= 0:
            raise ValueError("must be a positive number of milliseconds or 'target'")
        return float(v)


class GateConfig(Strict):
    """Explicit one-sided checks; an empty gate is a configuration error, never a pass.

    ``baseline`` bounds are relative to the class-prior model (it predicts the training
    split's class shares for every row) scored on the same held-out rows: the candidate
    must beat it by the margin, so the bounds fit whatever data the instance holds; with
    ``baseline_significance``, a ROC AUC margin also means clearing what a model with no
    skill reaches by chance on the held-out rows (a permutation test at that level).
    """

    min: dict[str, float] = {}
    max: dict[str, float] = {}
    baseline: dict[str, float] = {}
    baseline_significance: float | None = 0.05
    champion: ChampionCheck = ChampionCheck()
    slices: SliceChecks = SliceChecks()
    drift: DriftCheck = DriftCheck()
    parity: bool = True
    latency: LatencyCheck = LatencyCheck()

    @model_validator(mode="after")
    def _has_thresholds(self) -> GateConfig:
        check_known(self.min, GATE_METRICS, "metric")
        check_known(self.max, GATE_METRICS, "metric")
        check_known(self.baseline, BASELINE_METRICS, "baseline metric")
        if any(v < 0 for v in self.baseline.values()):
            raise ValueError("gate.baseline margins must be >= 0 (how much better than the "
                             "class prior the candidate must be)")
        if self.baseline_significance is not None and not 0 < self.baseline_significance < 0.5:
            raise ValueError("gate.baseline_significance must be between 0 and 0.5 (the chance a "
                             "model with no skill passes the ROC AUC margin), or null")
        if not self.min and not self.max and not self.baseline:
            raise ValueError("no thresholds configured: set at least one margin over the class "
                             "prior (gate.baseline, e.g. roc_auc: 0.05), absolute minimum "
                             "(gate.min, e.g. roc_auc: 0.8) or maximum (gate.max); "
                             "an empty gate would pass anything")
        return self


# ----------------------------------------------------------------------- registry


# ------------------------------------------------------------------ estimator


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
