"""Unit tests of the model's metrics: classification metrics and scorers against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as m

from loopline.core.errors import LooplineError
from loopline.core.names import METRICS
from loopline.model.metrics import classification_metrics, macro_ovr_roc_auc, scorer

CLASSES = ["bad", "good"]


def binary_case():
    y = np.array(["bad", "good", "good", "bad", "good", "good", "bad", "good"])
    p_bad = np.array([0.9, 0.2, 0.6, 0.4, 0.1, 0.3, 0.8, 0.55])
    proba = np.column_stack([p_bad, 1 - p_bad])
    return y, proba


def test_binary_metrics_match_sklearn_for_positive_class():
    y, proba = binary_case()
    got = classification_metrics(y, proba, CLASSES, "bad")
    pred = np.where(proba[:, 0] > 0.5, "bad", "good")
    assert pred.tolist() == ["bad", "good", "bad", "good", "good", "good", "bad", "bad"]
    assert got["rows"] == 8
    assert got["accuracy"] == pytest.approx(m.accuracy_score(y, pred))
    assert got["precision"] == pytest.approx(m.precision_score(y, pred, pos_label="bad"), abs=1e-6)
    assert got["recall"] == pytest.approx(m.recall_score(y, pred, pos_label="bad"), abs=1e-6)
    assert got["f1"] == pytest.approx(m.f1_score(y, pred, pos_label="bad"), abs=1e-6)
    assert got["roc_auc"] == pytest.approx(m.roc_auc_score(y == "bad", proba[:, 0]), abs=1e-6)
    assert got["average_precision"] == pytest.approx(
        m.average_precision_score(y == "bad", proba[:, 0]), abs=1e-6)
    assert got["brier"] == pytest.approx(m.brier_score_loss(y == "bad", proba[:, 0]), abs=1e-6)
    assert got["log_loss"] == pytest.approx(m.log_loss(y, proba, labels=CLASSES), abs=1e-6)
    # hand-checked: 3 true bad predicted bad... recall 2/3 (bad rows 0,3,6 -> predicted 0,6)
    assert got["recall"] == pytest.approx(2 / 3, abs=1e-6)
    assert got["precision"] == pytest.approx(2 / 4, abs=1e-6)
    assert got["per_class"]["bad"]["support"] == 3
    assert got["per_class"]["good"]["support"] == 5
    assert got["per_class"]["good"]["recall"] == pytest.approx(3 / 5, abs=1e-6)


def test_binary_positive_class_changes_the_headline():
    y, proba = binary_case()
    bad = classification_metrics(y, proba, CLASSES, "bad")
    good = classification_metrics(y, proba, CLASSES, "good")
    assert bad["recall"] != good["recall"]
    assert good["recall"] == pytest.approx(3 / 5, abs=1e-6)
    assert bad["accuracy"] == good["accuracy"]
    assert bad["roc_auc"] == pytest.approx(good["roc_auc"], abs=1e-6)


def test_binary_single_class_truth_has_no_auc():
    y = np.array(["good", "good", "good"])
    proba = np.array([[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]])
    got = classification_metrics(y, proba, CLASSES, "bad")
    assert got["roc_auc"] is None and got["average_precision"] is None
    assert got["accuracy"] == pytest.approx(2 / 3, abs=1e-6)
    assert got["recall"] == 0.0


def test_multiclass_macro_metrics_match_sklearn():
    classes = ["a", "b", "c"]
    y = np.array(["a", "b", "c", "a", "b", "c", "a", "c", "b"])
    proba = np.array([
        [0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6],
        [0.3, 0.5, 0.2], [0.4, 0.3, 0.3], [0.1, 0.1, 0.8],
        [0.5, 0.25, 0.25], [0.2, 0.5, 0.3], [0.05, 0.9, 0.05],
    ])
    pred = np.asarray(classes)[proba.argmax(1)]
    got = classification_metrics(y, proba, classes, "a")
    scorers = (("precision", m.precision_score), ("recall", m.recall_score), ("f1", m.f1_score))
    for name, fn in scorers:
        assert got[name] == pytest.approx(fn(y, pred, average="macro", zero_division=0), abs=1e-6)
    assert got["roc_auc"] == pytest.approx(
        m.roc_auc_score(y, proba, multi_class="ovr", labels=classes), abs=1e-6)
    assert got["brier"] is None
    assert "average_precision" not in got
    assert set(got["per_class"]) == set(classes)
    assert sum(c["support"] for c in got["per_class"].values()) == 9


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_multiclass_missing_class_in_truth_gives_no_auc():
    classes = ["a", "b", "c"]
    y = np.array(["a", "b", "a", "b"])
    proba = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4]])
    got = classification_metrics(y, proba, classes, "a")
    assert got["roc_auc"] is None
    assert got["per_class"]["c"]["support"] == 0


def test_metric_names_and_order_come_from_core_names():
    y, proba = binary_case()
    assert list(classification_metrics(y, proba, CLASSES, "bad")) == ["rows", *METRICS, "per_class"]
    multi = classification_metrics(np.array(["a", "b", "c"]), np.eye(3), ["a", "b", "c"], "a")
    assert list(multi) == ["rows", *(k for k in METRICS if k != "average_precision"), "per_class"]


# ------------------------------------------------------------------------ scorer


@pytest.fixture(scope="module")
def fitted_string_classifier():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = np.where(X[:, 0] + rng.normal(scale=1.0, size=200) > 0.8, "bad", "good")
    clf = LogisticRegression().fit(X, y)
    return clf, X, y


def test_scorer_precision_uses_positive_class(fitted_string_classifier):
    from sklearn.metrics import precision_score

    clf, X, y = fitted_string_classifier
    pred = clf.predict(X)
    s = scorer("precision", "bad", 2)
    assert s(clf, X, y) == pytest.approx(precision_score(y, pred, pos_label="bad"))
    assert precision_score(y, pred, pos_label="bad") != pytest.approx(
        precision_score(y, pred, pos_label="good"))


def test_scorer_recall_and_f1_use_positive_class(fitted_string_classifier):
    from sklearn.metrics import f1_score, recall_score

    clf, X, y = fitted_string_classifier
    pred = clf.predict(X)
    expected_recall = recall_score(y, pred, pos_label="bad")
    assert scorer("recall", "bad", 2)(clf, X, y) == pytest.approx(expected_recall)
    expected_f1 = f1_score(y, pred, pos_label="good")
    assert scorer("f1", "good", 2)(clf, X, y) == pytest.approx(expected_f1)


def test_scorer_average_precision_uses_positive_class_probability(fitted_string_classifier):
    from sklearn.metrics import average_precision_score

    clf, X, y = fitted_string_classifier
    pos = list(clf.classes_).index("bad")
    expected = average_precision_score(y == "bad", clf.predict_proba(X)[:, pos])
    assert scorer("average_precision", "bad", 2)(clf, X, y) == pytest.approx(expected)
    other = average_precision_score(y == "good", clf.predict_proba(X)[:, 1 - pos])
    assert expected != pytest.approx(other)


def test_scorer_names():
    assert scorer("roc_auc", "bad", 2) == "roc_auc"
    assert scorer("roc_auc", "bad", 3) is macro_ovr_roc_auc
    assert scorer("accuracy", "bad", 2) == "accuracy"
    with pytest.raises(LooplineError, match=r"unknown scoring 'roc_aucc'"):
        scorer("roc_aucc", "bad", 2)


def test_multiclass_roc_auc_is_sklearns_and_scores_folds_without_a_rare_class():
    """A class with fewer rows than CV folds is missing from some folds: the search goes on."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import get_scorer
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 3))
    y = np.array(["a", "b", "c"], dtype=object)[np.digitize(X[:, 0], [-0.5, 0.5])]
    clf = LogisticRegression().fit(X, y)
    assert macro_ovr_roc_auc(clf, X, y) == pytest.approx(get_scorer("roc_auc_ovr")(clf, X, y))
    assert macro_ovr_roc_auc(clf, X[y != "c"], y[y != "c"]) == pytest.approx(np.mean(
        [m.roc_auc_score(y[y != "c"] == c, clf.predict_proba(X[y != "c"])[:, i]) for i, c in enumerate("ab")]))
    y[:3] = "rare"  # 3 rows: absent from 2 of 5 validation folds, and from no training fold
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    with pytest.raises(ValueError):
        GridSearchCV(LogisticRegression(), {"C": [1.0]}, cv=cv, scoring="roc_auc_ovr",
                     error_score="raise").fit(X, y)
    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=cv,
                          scoring=scorer("roc_auc", "a", 4), error_score="raise").fit(X, y)
    assert 0.8 < search.best_score_ <= 1.0
