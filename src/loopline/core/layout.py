"""Where everything lives: every file and directory name loopline reads or writes, once.

Directories that a user may move (``paths`` in params.yaml: raw, prepared, models,
reports) are given by :class:`Layout`; the names of the files inside them are constants
here, and nowhere else. dvc.yaml declares the same outputs (a test keeps the two equal).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopline.core.errors import LooplineError

# ------------------------------------------------------------------- an instance
PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"
CONF_NAME = "config"
DVC_YAML = "dvc.yaml"
DVC_LOCK = "dvc.lock"
WORKFLOWS_DIR = ".github/workflows"
STATE_DIR = ".loopline"          # loopline's own working state inside an instance (ignored)
PARAMS_CACHE = ".dvc/tmp/loopline-params.json"

# -------------------------------------------------- under paths.* (defaults below)
RAW_DEFAULT = "data/raw/data.parquet"
PREPARED_DEFAULT = "data/prepared"
MODELS_DEFAULT = "models"
REPORTS_DEFAULT = "reports"

TRAIN_SPLIT = "train.parquet"     # paths.prepared
TEST_SPLIT = "test.parquet"

MODEL_JOBLIB = "model.joblib"     # paths.models
MODEL_ONNX = "model.onnx"
CARD_JSON = "card.json"
CARD_MD = "card.md"

VALIDATE_JSON = "validate.json"   # paths.reports
PREPARE_JSON = "prepare.json"
SEARCH_JSON = "search.json"
METRICS_JSON = "metrics.json"
SLICES_JSON = "slices.json"
IMPORTANCE_JSON = "importance.json"
EVALUATION_MD = "evaluation.md"
PLOTS_DIR = "plots"
ROC_CSV = "roc.csv"               # paths.reports/plots
PR_CSV = "pr.csv"
CONFUSION_CSV = "confusion.csv"
IMPORTANCE_CSV = "importance.csv"
PARITY_JSON = "parity.json"
CHAMPION_JSON = "champion.json"
GATE_JSON = "gate.json"
GATE_MD = "gate.md"
GATE_HTML = "gate.html"
MONITOR_JSON = "monitor.json"
MONITOR_HTML = "monitor.html"
MONITOR_AUDIT = "monitor_audit.jsonl"
DASHBOARD_HTML = "dashboard.html"
SIMULATE_JSON = "simulate.json"
SIMULATE_HTML = "simulate.html"
SIMULATE_CANARY_HTML = "simulate-canary.html"  # loopline simulate --scenario canary
REVIEW_MD = "review.md"
CI_DIR = f"{STATE_DIR}/ci"         # what `loopline ci` keeps of a run (artifacts), per workflow

# --------------------------------------------------------------------- registry
REGISTRY_GIT_DIR = "loopline"       # in the git common dir: the registry's lock and journal
REGISTRY_MARKERS = "refs/loopline/assigned"  # <artifact>/<stage>/<n>: every number ever assigned

# ---------------------------------------------------------------------- serving
CHAMPION_DIR = f"{STATE_DIR}/champion"  # the champion's model, fetched for the gate
TIMINGS_JSON = f"{STATE_DIR}/timings.json"  # wall-clock figures (search, gate latency): never committed
SERVE_DIR = f"{STATE_DIR}/serve"  # what `loopline serve` prepares (spec, fetched bundles)
SERVE_SPEC = "loopline_serve.json"  # the spec built into a Bento
RUN_SPEC = "spec.json"              # the spec of one `loopline serve` run (SERVE_DIR/run-PORT/)
RELOAD_CONTROL = "active.json"      # the version a running service's workers follow
BENTOFILE = "bentofile.yaml"
INFERENCE_LOG_DEFAULT = "logs/inference.sqlite"
LOG_STORE_PREFIX = "inference-log"  # the object store's folder in the DVC remote's bucket
SHIP_LOCK_SUFFIX = ".ship.lock"     # beside the inference log: one shipper per replica
LOG_SPOOL_SUFFIX = ".spool.jsonl"   # beside the log: records the log could not take, replayed at start
LOG_REPLAYING_SUFFIX = ".replaying"  # a spool being replayed (renamed first, so only one replays it)
LOG_ASIDE_SUFFIX = ".aside"          # a bad log moved aside: <log>.<UTC time>.aside
ALERTS_DEFAULT = "reports/alerts.jsonl"
MONITOR_HISTORY_DEFAULT = "reports/monitor_history.jsonl"
INSTANCE_README = "README.md"


@dataclass(frozen=True)
class Layout:
    """The directories of one instance, from ``paths`` in params.yaml.

    Attributes:
        root: The repository directory.
        raw, prepared, models, reports: ``paths.*``, relative to ``root``.
    """

    root: Path
    raw: str = RAW_DEFAULT
    prepared: str = PREPARED_DEFAULT
    models: str = MODELS_DEFAULT
    reports: str = REPORTS_DEFAULT

    @classmethod
    def of(cls, root: Path, paths: Any) -> Layout:
        """From a ``paths`` mapping or object (params.yaml's ``paths``); missing keys default."""
        get = paths.get if isinstance(paths, dict) else (lambda k, d: getattr(paths, k, d))
        return cls(Path(root), *(str(get(k, d)) for k, d in (
            ("raw", RAW_DEFAULT), ("prepared", PREPARED_DEFAULT), ("models", MODELS_DEFAULT),
            ("reports", REPORTS_DEFAULT))))

    def model(self, name: str = MODEL_ONNX) -> Path:
        return self.root / self.models / name

    def report(self, name: str) -> Path:
        return self.root / self.reports / name

    def split(self, name: str) -> Path:
        """A prepared split: ``train`` or ``test``."""
        return self.root / self.prepared / f"{name}.parquet"

    def rel(self, path: Path) -> str:
        """``path`` relative to the root, as dvc.lock and reports name it."""
        return path.relative_to(self.root).as_posix()


def is_instance(d: Path) -> bool:
    """A loopline instance has a dvc.yaml and conf/config.yaml (params.yaml is composed)."""
    return (d / DVC_YAML).is_file() and (d / CONF_DIR / f"{CONF_NAME}.yaml").is_file()


def find_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The loopline instance containing ``start``: the nearest dir with dvc.yaml and conf/.

    Raises:
        LooplineError: when no parent directory is a loopline instance.
    """
    here = Path(start or os.getcwd()).resolve()
    for d in (here, *here.parents):
        if is_instance(d):
            return d
    raise LooplineError(
        f"not a loopline repo: no {DVC_YAML} and {CONF_DIR}/{CONF_NAME}.yaml in {here} or any "
        "parent (run `loopline init DIR` to make one)"
    )
