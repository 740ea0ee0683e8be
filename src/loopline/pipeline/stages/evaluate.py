"""evaluate: held-out metrics, per-slice metrics, permutation importance and DVC plots.

Outputs are small, committed and uncached, so ``dvc metrics diff`` and ``dvc plots diff``
(and the pull-request report) work without pulling anything:
reports/metrics.json, reports/slices.json, reports/importance.json, reports/evaluation.md and
reports/plots/{roc,pr,confusion,importance}.csv.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from loopline.config.params import Params
from loopline.core.files import Outputs
from loopline.core.layout import (
    CONFUSION_CSV,
    EVALUATION_MD,
    IMPORTANCE_CSV,
    IMPORTANCE_JSON,
    METRICS_JSON,
    MODEL_JOBLIB,
    PLOTS_DIR,
    PR_CSV,
    ROC_CSV,
    SLICES_JSON,
    Layout,
)
from loopline.core.names import GATE_METRICS, SLICE_METRICS
from loopline.model.metrics import classification_metrics, rounded, scorer
from loopline.pipeline.tabular import load_split, xy


def slice_metrics(frame: pd.DataFrame, column: str, y: np.ndarray, proba: np.ndarray,
                  classes: list[str], positive: str, min_size: int) -> dict:
    """Metrics per value of ``column`` and the largest gap between slices large enough."""
    values = frame[column].astype(object).where(frame[column].notna(), "<missing>")
    if pd.api.types.is_numeric_dtype(frame[column]) and frame[column].nunique() > 10:
        values = pd.qcut(frame[column], 4, duplicates="drop").astype(str).where(frame[column].notna(), "<missing>")
    slices = {}
    for value in sorted(values.unique(), key=str):
        mask = (values == value).to_numpy()
        stats = classification_metrics(y[mask], proba[mask], classes, positive)
        stats.pop("per_class")
        stats["included_in_gap"] = bool(mask.sum() >= min_size)
        slices[str(value)] = stats
    gaps = {}
    for metric in SLICE_METRICS:
        vals = {k: s[metric] for k, s in slices.items() if s["included_in_gap"] and s[metric] is not None}
        if len(vals) >= 2:
            lo, hi = min(vals, key=vals.get), max(vals, key=vals.get)
            gaps[metric] = {"gap": rounded(vals[hi] - vals[lo]), "lowest": lo, "highest": hi}
    return {"column": column, "min_slice_size": min_size, "slices": slices, "max_gap": gaps}


def importance(model, X: pd.DataFrame, y: np.ndarray, scoring, n_repeats: int, seed: int) -> list[dict]:
    """Permutation importance of each raw input column on the held-out split."""
    drops = permutation_importances(model, X, y, scoring, n_repeats, seed)
    mean, std = np.mean(drops, axis=1), np.std(drops, axis=1)
    rows = [{"feature": c, "importance": rounded(mean[i]), "std": rounded(std[i])}
            for i, c in enumerate(X.columns)]
    return sorted(rows, key=lambda r: -(r["importance"] or 0.0))


#: at most this many cells (rows × columns) of permuted copies go to the model in one call
STACKED_CELLS = 4_000_000


def permutation_importances(model, X: pd.DataFrame, y: np.ndarray, scoring, n_repeats: int,
                            seed: int) -> np.ndarray:
    """Baseline score minus the score with each column permuted, shape (columns, n_repeats).

    The numbers of ``sklearn.inspection.permutation_importance(model, X, y, scoring=scoring,
    n_repeats=n_repeats, random_state=seed)`` (its ``importances``), computed with as few
    model calls as :data:`STACKED_CELLS` allows instead of one per permuted copy: the
    copies (every repeat of every column) are stacked and scored in one call, and each
    copy's score comes from its slice of the answers (:class:`_Replay`). A pipeline's fixed
    cost per call (column selection, imputation, encoding, input checks) is then paid once,
    which is most of the work on a few hundred held-out rows: on 240 rows × 56 columns,
    5 repeats, the importances took 2.4 s with a call per column and 0.9–1.2 s with one
    call for all. A model answers each row on its own, so the numbers do not depend on how
    the copies are grouped.

    The permutations are sklearn's: one seed drawn from ``seed``, the same shuffles for
    every column, each shuffle applied to the previous repeat's column (sklearn permutes
    its working copy in place).
    """
    from sklearn import config_context
    from sklearn.metrics import check_scoring

    scorer = check_scoring(model, scoring=scoring)
    baseline = scorer(model, X, y)
    with config_context(skip_parameter_validation=True):  # checked once, by the baseline
        return _drops(model, X, y, scorer, baseline, n_repeats, seed)


def _drops(model, X: pd.DataFrame, y: np.ndarray, scorer, baseline: float, n_repeats: int,
           seed: int) -> np.ndarray:
    """:func:`permutation_importances` once the baseline is scored."""
    orders = _permutation_orders(seed, len(X), n_repeats)
    base = X.reset_index(drop=True)
    copies = [(j, r) for j in range(X.shape[1]) for r in range(n_repeats)]
    per_call = max(1, STACKED_CELLS // max(X.size, 1))
    drops = np.empty((X.shape[1], n_repeats))
    for first in range(0, len(copies), per_call):
        group = copies[first:first + per_call]
        stacked = pd.concat([_permuted(base, X.columns[j], orders[r]) for j, r in group],
                            ignore_index=True)
        replay = _Replay(model, stacked, len(X))
        for k, (j, r) in enumerate(group):
            drops[j, r] = baseline - scorer(replay.copy(k), X, y)
    return drops


def _permuted(base: pd.DataFrame, name: str, order: np.ndarray) -> pd.DataFrame:
    """``base`` (a default index) with column ``name`` in row ``order``, its dtype kept."""
    out = base.copy(deep=False)
    out[name] = base[name].take(order).reset_index(drop=True)
    return out


def _permutation_orders(seed: int, rows: int, n_repeats: int) -> list[np.ndarray]:
    """Row order of each repeat's permuted column, as sklearn's permutation_importance draws
    them: repeat r's column is repeat r-1's taken in the r-th shuffle of one index array."""
    from sklearn.utils import check_random_state

    column_seed = check_random_state(seed).randint(np.iinfo(np.int32).max + 1)
    state = check_random_state(column_seed)
    shuffling = np.arange(rows)
    order = np.arange(rows)
    orders = []
    for _ in range(n_repeats):
        state.shuffle(shuffling)
        order = order[shuffling]
        orders.append(order)
    return orders


class _Replay:
    """A fitted classifier's answers on stacked copies of the held-out rows, handed to a
    scikit-learn scorer one copy at a time.

    :meth:`copy` gives a stand-in for the model that the scorer uses as it would use the
    model: it offers the same prediction methods (the scorer picks among them by name) and
    classes, and answers with copy ``k``'s slice of one call on all copies.
    """

    METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function")

    def __init__(self, model, stacked: pd.DataFrame, rows: int) -> None:
        self.model, self.stacked, self.rows = model, stacked, rows
        self.answers: dict[str, np.ndarray] = {}

    def answer(self, method: str, k: int) -> np.ndarray:
        if method not in self.answers:
            self.answers[method] = getattr(self.model, method)(self.stacked)
        return self.answers[method][k * self.rows:(k + 1) * self.rows]

    def copy(self, k: int) -> _ReplayedCopy:
        return _ReplayedCopy(self, k)


class _ReplayedCopy:
    """The model as a scorer sees it, answering for copy ``k`` of :class:`_Replay`."""

    def __init__(self, replay: _Replay, k: int) -> None:
        self.classes_ = replay.model.classes_
        self._tags = replay.model.__sklearn_tags__()
        for method in _Replay.METHODS:
            if hasattr(replay.model, method):
                setattr(self, method, _replayed(replay, method, k))

    def __sklearn_tags__(self):
        return self._tags


def _replayed(replay: _Replay, method: str, k: int):
    def answer(_X):
        return replay.answer(method, k)

    answer.__name__ = method  # scorers post-process by the method's name
    return answer


def curves(y: np.ndarray, proba: np.ndarray, classes: list[str], positive: str
           ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """ROC and precision-recall points for the positive class, and actual/predicted pairs."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    pos = classes.index(positive)
    truth = y == positive
    fpr, tpr, thr = roc_curve(truth, proba[:, pos], drop_intermediate=True)
    roc = pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.clip(thr, 0, 1)})
    prec, rec, thr2 = precision_recall_curve(truth, proba[:, pos], drop_intermediate=True)
    pr = pd.DataFrame({"recall": rec, "precision": prec, "threshold": np.append(thr2, 1.0)})
    confusion = pd.DataFrame({"actual": y, "predicted": np.asarray(classes)[proba.argmax(axis=1)]})
    return roc, pr, confusion


def markdown(metrics: dict, slices: dict | None, imp: list[dict], positive: str) -> str:
    lines = ["# Evaluation on the held-out split", "",
             f"Positive class: `{positive}`; {metrics['rows']} rows.", "",
             "| metric | value |", "|---|---|"]
    for k, v in metrics.items():
        if k not in ("per_class", "rows") and v is not None:
            lines.append(f"| {k} | {v:.4f} |")
    lines += ["", "## Per class", "", "| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
    for c, s in metrics["per_class"].items():
        lines.append(f"| {c} | {s['precision']:.4f} | {s['recall']:.4f} | {s['f1']:.4f} | {s['support']} |")
    if slices:
        lines += ["", f"## Slices by `{slices['column']}`", "",
                  "| slice | rows | accuracy | recall | roc_auc |", "|---|---|---|---|---|"]
        for k, s in slices["slices"].items():
            auc = "n/a" if s["roc_auc"] is None else f"{s['roc_auc']:.4f}"
            lines.append(f"| {k} | {s['rows']} | {s['accuracy']:.4f} | {s['recall']:.4f} | {auc} |")
        for metric, g in slices["max_gap"].items():
            lines.append(f"\nLargest {metric} gap: {g['gap']:.4f} ({g['lowest']} vs {g['highest']})")
    lines += ["", "## Permutation importance (held-out)", "", "| feature | importance | std |", "|---|---|---|"]
    for r in imp:
        lines.append(f"| {r['feature']} | {r['importance']:.4f} | {r['std']:.4f} |")
    return "\n".join(lines) + "\n"


def run(params: Params, root: Path) -> dict:
    import joblib

    lay = Layout.of(root, params.paths)
    test = load_split(root, params, "test")
    X, y = xy(test, params)
    model = joblib.load(lay.model(MODEL_JOBLIB))
    classes = [str(c) for c in model.classes_]
    positive = params.data.positive_class
    proba = model.predict_proba(X)
    metrics = classification_metrics(y, proba, classes, positive)
    ecfg = params.evaluate
    slices = (slice_metrics(test, ecfg.slice_column, y, proba, classes, positive, ecfg.min_slice_size)
              if ecfg.slice_column else None)
    imp = importance(model, X, y, scorer(ecfg.permutation.scoring, positive, len(classes)),
                     ecfg.permutation.n_repeats, params.seed)
    roc, pr, confusion = curves(y, proba, classes, positive) if len(classes) == 2 else (None, None, None)
    plots = lay.report(PLOTS_DIR)
    with Outputs(root) as out:
        out.json(lay.report(METRICS_JSON), metrics)
        out.json(lay.report(SLICES_JSON), slices or {"column": None, "slices": {}, "max_gap": {}})
        out.json(lay.report(IMPORTANCE_JSON), {"scoring": ecfg.permutation.scoring, "features": imp})
        out.csv(plots / IMPORTANCE_CSV, pd.DataFrame(imp)[["feature", "importance"]])
        if roc is None:
            confusion = pd.DataFrame({"actual": y, "predicted": np.asarray(classes)[proba.argmax(1)]})
            roc = pd.DataFrame(columns=["fpr", "tpr", "threshold"])
            pr = pd.DataFrame(columns=["recall", "precision", "threshold"])
        out.csv(plots / ROC_CSV, roc)
        out.csv(plots / PR_CSV, pr)
        out.csv(plots / CONFUSION_CSV, confusion)
        out.text(lay.report(EVALUATION_MD), markdown(metrics, slices, imp, positive))
    return {k: metrics.get(k) for k in GATE_METRICS}
