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
    from sklearn.inspection import permutation_importance

    res = permutation_importance(model, X, y, scoring=scoring, n_repeats=n_repeats,
                                 random_state=seed, n_jobs=1)
    rows = [{"feature": c, "importance": rounded(res.importances_mean[i]), "std": rounded(res.importances_std[i])}
            for i, c in enumerate(X.columns)]
    return sorted(rows, key=lambda r: -(r["importance"] or 0.0))


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
