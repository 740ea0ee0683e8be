"""Classification metrics of a model: what train searches on and evaluate reports.

The metric names, their order and their sense come from :data:`loopline.core.names.METRICS`;
this module computes them with scikit-learn for string labels and a configured positive
class (binary: the positive class; multiclass: macro averages).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from loopline.core.errors import LooplineError
from loopline.core.names import METRICS


def rounded(x: float | None) -> float | None:
    """A metric as reports store it: 6 decimals, None when undefined (NaN, inf)."""
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def scorer(name: str, positive: str, n_classes: int) -> Any:
    """A scorer name that works with string labels and the configured positive class."""
    from sklearn.metrics import (
        average_precision_score,
        f1_score,
        get_scorer,
        get_scorer_names,
        make_scorer,
        precision_score,
        recall_score,
    )

    if n_classes > 2 and name in ("roc_auc", "roc_auc_ovr"):
        return macro_ovr_roc_auc
    if n_classes == 2 and name in ("precision", "recall", "f1"):
        fn = {"precision": precision_score, "recall": recall_score, "f1": f1_score}[name]
        return make_scorer(fn, pos_label=positive, zero_division=0)
    if n_classes == 2 and name == "average_precision":
        return make_scorer(average_precision_score, pos_label=positive, response_method="predict_proba")
    if name not in get_scorer_names():
        raise LooplineError(f"unknown scoring {name!r} in search.scoring or evaluate.permutation.scoring")
    get_scorer(name)
    return name


def macro_ovr_roc_auc(estimator: Any, X: Any, y: Any) -> float:
    """Macro one-vs-rest ROC AUC of a fitted classifier on ``X``, as a scikit-learn scorer.

    The mean of each class's ROC AUC against the others, as ``roc_auc_ovr``, over the
    classes that occur in ``y`` and that the model knows. A rare class (fewer rows than CV
    folds) is missing from some folds, on either side: ``roc_auc_ovr`` then raises and ends
    the search; here that fold is scored on its other classes. With every class in both,
    the value is ``roc_auc_ovr``'s.
    """
    from sklearn.metrics import roc_auc_score

    proba = estimator.predict_proba(X)
    y = np.asarray(y)
    scores = [roc_auc_score(y == c, proba[:, i]) for i, c in enumerate(estimator.classes_)
              if 0 < int(np.sum(y == c)) < len(y)]
    return float(np.mean(scores)) if scores else float("nan")


def classification_metrics(y: np.ndarray, proba: np.ndarray, classes: list[str],
                           positive: str) -> dict:
    """Headline metrics (in :data:`METRICS` order) and per-class figures of one scored set.

    Binary: for the positive class; multiclass: macro averages (no average precision, no
    Brier score). A metric that is undefined on these rows is None.
    """
    from sklearn import metrics as m

    pred = np.asarray(classes)[proba.argmax(axis=1)]
    binary = len(classes) == 2
    values: dict[str, float | None] = {"accuracy": rounded(m.accuracy_score(y, pred))}
    if binary:
        pos = classes.index(positive)
        kw = dict(pos_label=positive, zero_division=0)
        values["precision"] = rounded(m.precision_score(y, pred, **kw))
        values["recall"] = rounded(m.recall_score(y, pred, **kw))
        values["f1"] = rounded(m.f1_score(y, pred, **kw))
        both = len(set(y)) == 2
        values["roc_auc"] = rounded(m.roc_auc_score(y == positive, proba[:, pos])) if both else None
        values["average_precision"] = (rounded(m.average_precision_score(y == positive, proba[:, pos]))
                                       if both else None)
    else:
        kw = dict(average="macro", zero_division=0)
        values["precision"] = rounded(m.precision_score(y, pred, **kw))
        values["recall"] = rounded(m.recall_score(y, pred, **kw))
        values["f1"] = rounded(m.f1_score(y, pred, **kw))
        try:
            values["roc_auc"] = rounded(m.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
        except ValueError:
            values["roc_auc"] = None
    values["log_loss"] = rounded(m.log_loss(y, np.clip(proba, 1e-15, 1), labels=classes))
    values["brier"] = (rounded(m.brier_score_loss(y == positive, proba[:, classes.index(positive)]))
                       if binary else None)
    p, r, f, s = m.precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
    return {"rows": int(len(y)), **{k: values[k] for k in METRICS if k in values},
            "per_class": {c: {"precision": rounded(p[i]), "recall": rounded(r[i]),
                              "f1": rounded(f[i]), "support": int(s[i])}
                          for i, c in enumerate(classes)}}
