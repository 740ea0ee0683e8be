"""Unit tests of the evaluate stage: slices, curves, the report.

The metrics themselves: unit/model/test_metrics.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as m

from loopline.model.metrics import classification_metrics
from loopline.pipeline.stages.evaluate import curves, markdown, slice_metrics

CLASSES = ["bad", "good"]


def binary_case():
    y = np.array(["bad", "good", "good", "bad", "good", "good", "bad", "good"])
    p_bad = np.array([0.9, 0.2, 0.6, 0.4, 0.1, 0.3, 0.8, 0.55])
    proba = np.column_stack([p_bad, 1 - p_bad])
    return y, proba


# ------------------------------------------------------------------ slices


def slice_case():
    rng = np.random.default_rng(0)
    groups = ["A"] * 40 + ["B"] * 35 + ["C"] * 5 + [None] * 4
    n = len(groups)
    y = rng.choice(CLASSES, size=n)
    p_bad = np.where(y == "bad", 0.7, 0.3)
    # B is predicted perfectly; A gets a quarter wrong; C entirely wrong
    p_bad[:10] = 1 - p_bad[:10]
    p_bad[75:80] = 1 - p_bad[75:80]
    proba = np.column_stack([p_bad, 1 - p_bad])
    return pd.DataFrame({"g": groups}), y, proba


def test_slice_metrics_gap_and_min_size():
    frame, y, proba = slice_case()
    got = slice_metrics(frame, "g", y, proba, CLASSES, "bad", min_size=30)
    assert list(got["slices"]) == ["<missing>", "A", "B", "C"]
    assert got["slices"]["A"]["rows"] == 40 and got["slices"]["C"]["rows"] == 5
    assert got["slices"]["A"]["included_in_gap"] and got["slices"]["B"]["included_in_gap"]
    assert not got["slices"]["C"]["included_in_gap"]
    assert not got["slices"]["<missing>"]["included_in_gap"]
    assert got["slices"]["C"]["accuracy"] == 0.0
    assert got["slices"]["A"]["accuracy"] == pytest.approx(0.75)
    assert got["slices"]["B"]["accuracy"] == 1.0
    gap = got["max_gap"]["accuracy"]
    # C (accuracy 0) is too small to count: the gap is between A and B only
    assert gap == {"gap": 0.25, "lowest": "A", "highest": "B"}
    assert "per_class" not in got["slices"]["A"]
    assert got["column"] == "g" and got["min_slice_size"] == 30


def test_slice_metrics_small_min_size_includes_all():
    frame, y, proba = slice_case()
    got = slice_metrics(frame, "g", y, proba, CLASSES, "bad", min_size=1)
    assert got["max_gap"]["accuracy"]["lowest"] == "C"
    assert got["max_gap"]["accuracy"]["gap"] == 1.0


def test_slice_metrics_needs_two_slices_for_a_gap():
    frame, y, proba = slice_case()
    got = slice_metrics(frame, "g", y, proba, CLASSES, "bad", min_size=36)
    assert [k for k, s in got["slices"].items() if s["included_in_gap"]] == ["A"]
    assert got["max_gap"] == {}


def test_slice_metrics_numeric_column_binned_in_quartiles():
    rng = np.random.default_rng(1)
    n = 80
    frame = pd.DataFrame({"age": rng.integers(18, 90, size=n).astype(float)})
    frame.loc[[0, 1], "age"] = np.nan
    y = rng.choice(CLASSES, size=n)
    proba = np.column_stack([np.full(n, 0.4), np.full(n, 0.6)])
    got = slice_metrics(frame, "age", y, proba, CLASSES, "bad", min_size=5)
    keys = list(got["slices"])
    assert "<missing>" in keys
    assert len(keys) == 5
    assert sum(s["rows"] for s in got["slices"].values()) == n
    assert got["slices"]["<missing>"]["rows"] == 2


# ------------------------------------------------------------------ curves


def test_curves_shapes_and_columns():
    y, proba = binary_case()
    roc, pr, confusion = curves(y, proba, CLASSES, "bad")
    assert list(roc.columns) == ["fpr", "tpr", "threshold"]
    assert list(pr.columns) == ["recall", "precision", "threshold"]
    assert list(confusion.columns) == ["actual", "predicted"]
    fpr, tpr, _ = m.roc_curve(y == "bad", proba[:, 0])
    assert np.allclose(roc["fpr"], fpr) and np.allclose(roc["tpr"], tpr)
    assert (roc.iloc[0]["fpr"], roc.iloc[0]["tpr"]) == (0.0, 0.0)
    assert (roc.iloc[-1]["fpr"], roc.iloc[-1]["tpr"]) == (1.0, 1.0)
    assert roc["threshold"].between(0, 1).all()  # the leading inf is clipped
    prec, rec, thr = m.precision_recall_curve(y == "bad", proba[:, 0], drop_intermediate=True)
    assert len(pr) == len(prec) == len(thr) + 1
    assert np.allclose(pr["threshold"].iloc[:-1], thr)
    assert np.allclose(pr["recall"], rec) and np.allclose(pr["precision"], prec)
    assert pr["threshold"].iloc[-1] == 1.0
    assert len(confusion) == len(y)
    assert confusion["actual"].tolist() == y.tolist()
    assert confusion["predicted"].tolist() == ["bad", "good", "bad", "good",
                                               "good", "good", "bad", "bad"]


def test_curves_follow_the_positive_class():
    y, proba = binary_case()
    roc_bad = curves(y, proba, CLASSES, "bad")[0]
    roc_good = curves(y, proba, CLASSES, "good")[0]
    fpr, tpr, _ = m.roc_curve(y == "good", proba[:, 1])
    assert np.allclose(roc_good["fpr"], fpr) and np.allclose(roc_good["tpr"], tpr)
    assert len(roc_bad) > 2


def test_markdown_report_lists_metrics_and_slices():
    y, proba = binary_case()
    metrics = classification_metrics(y, proba, CLASSES, "bad")
    frame = pd.DataFrame({"g": ["x"] * 4 + ["z"] * 4})
    slices = slice_metrics(frame, "g", y, proba, CLASSES, "bad", min_size=1)
    text = markdown(metrics, slices, [{"feature": "f", "importance": 0.1, "std": 0.01}], "bad")
    assert "Positive class: `bad`; 8 rows." in text
    assert f"| recall | {metrics['recall']:.4f} |" in text
    assert "## Slices by `g`" in text
    assert "| f | 0.1000 | 0.0100 |" in text


# ------------------------------------------------------------------ permutation importance


@pytest.fixture(scope="module")
def importance_frames():
    from tests.helpers.model_data import model_frames

    frames = model_frames()
    test_raw_y = np.resize(frames["y2"], len(frames["test"]))  # labels for the held-out rows
    frames["test_y2"] = test_raw_y
    frames["y3"] = np.asarray(frames["y3"]).astype(str)
    frames["test_y3"] = np.resize(frames["y3"], len(frames["test"]))
    return frames


@pytest.mark.parametrize("estimator", ["logreg", "rf", "hgb"])
@pytest.mark.parametrize(("target", "scoring", "positive"), [
    ("y2", "roc_auc", "good"), ("y2", "recall", "bad"), ("y2", "accuracy", "good"),
    ("y2", "average_precision", "bad"), ("y3", "roc_auc", None), ("y3", "neg_log_loss", None),
])
def test_batched_permutation_importance_is_sklearns(importance_frames, estimator, target, scoring, positive):
    """The same numbers as sklearn's permutation_importance for the same random_state, to
    the last bit: same permutations, same scorer, the model's answers sliced per copy."""
    from sklearn.inspection import permutation_importance

    from loopline.model.metrics import scorer
    from loopline.pipeline.stages.evaluate import importance, permutation_importances
    from tests.helpers.model_data import fit_pipeline

    f = importance_frames
    model = fit_pipeline(f, estimator, "median", "most_frequent", y=target)
    X, y = f["test"], f[f"test_{target}"]
    score = scorer(scoring, positive or "", len(model.classes_))
    ours = permutation_importances(model, X, y, score, n_repeats=4, seed=7)
    theirs = permutation_importance(model, X, y, scoring=score, n_repeats=4, random_state=7, n_jobs=1)
    np.testing.assert_array_equal(ours, theirs.importances)
    assert np.any(ours != 0)  # the columns matter: equality is not between two zero arrays
    rows = {r["feature"]: r for r in importance(model, X, y, score, 4, 7)}
    for i, col in enumerate(X.columns):
        assert rows[col]["importance"] == round(float(theirs.importances_mean[i]), 6)
        assert rows[col]["std"] == round(float(theirs.importances_std[i]), 6)


def test_batched_permutation_importance_in_groups_of_repeats(importance_frames, monkeypatch):
    """Copies that would not fit in one call go in groups, across columns; the numbers do not
    change."""
    from sklearn.inspection import permutation_importance

    from loopline.pipeline.stages import evaluate
    from tests.helpers.model_data import fit_pipeline

    f = importance_frames
    model = fit_pipeline(f, "hgb", "median", "most_frequent")
    X, y = f["test"], f["test_y2"]
    calls = []
    answer = model.predict_proba

    def predict_proba(frame):  # the name a scorer looks for
        calls.append(len(frame))
        return answer(frame)

    monkeypatch.setattr(model, "predict_proba", predict_proba, raising=False)
    monkeypatch.setattr(evaluate, "STACKED_CELLS", X.size * 2)
    ours = evaluate.permutation_importances(model, X, y, "neg_log_loss", n_repeats=5, seed=3)
    copies = X.shape[1] * 5  # every repeat of every column, two copies a call
    assert calls == [len(X)] + [2 * len(X)] * (copies // 2) + [len(X)] * (copies % 2)  # baseline first
    monkeypatch.undo()
    theirs = permutation_importance(model, X, y, scoring="neg_log_loss", n_repeats=5, random_state=3)
    np.testing.assert_array_equal(ours, theirs.importances)
