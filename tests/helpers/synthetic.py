"""Synthetic tabular data sets of the kinds a new user brings, seeded and small.

Each function returns a pandas DataFrame and the name of its target column. The signal is
real (a model can beat the class prior) unless the set says otherwise, so gate verdicts can
be checked both ways.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TITLES = ["engineer", "senior engineer", "data analyst", "nurse", "teacher", "sales rep",
          "driver", "accountant", "chef", "designer", "manager", "clerk", "pilot", "plumber"]


def _logit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def odd_names(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """Column names a CSV may hold: '/', spaces, dots, dashes, unicode, leading digits, and
    two names that collide once non-word characters become '_'."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=n), rng.normal(size=n), rng.integers(0, 50, size=n)
    cat = rng.choice(["north", "south", "east", "west"], size=n)
    score = 1.2 * a - 0.8 * b + 0.04 * c + (cat == "north") * 0.9
    y = np.where(rng.random(n) < _logit(score - 1.0), "yes", "no")
    df = pd.DataFrame({
        "ratio/total": a.round(4), "ratio_total": (a * 0.5 + rng.normal(size=n)).round(4),
        "annual income (€)": (b * 1000 + 30000).round(2), "v1.2": c, "x-y": rng.normal(size=n),
        "2nd_try": rng.integers(0, 3, size=n), "région": cat, "Größe cm": rng.normal(170, 9, n),
        "label?": y})
    return df, "label?"


def multiclass_with_date(n: int = 900, seed: int = 1) -> tuple[pd.DataFrame, str]:
    """Five classes, a date column (time order), numeric and categorical features."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    grp = rng.choice(["a", "b", "c"], size=n)
    z = np.stack([x1, -x1, x2, -x2, 0.5 * (x1 + x2)], axis=1) + rng.normal(scale=0.6, size=(n, 5))
    z[:, 0] += (grp == "a") * 0.8
    labels = np.array(["alpha", "beta", "gamma", "delta", "epsilon"])[z.argmax(axis=1)]
    dates = pd.Timestamp("2023-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 700, n)), "D")
    return pd.DataFrame({"signup_date": dates.strftime("%Y-%m-%d"), "x1": x1.round(4),
                         "x2": x2.round(4), "group": grp, "kind": labels}), "kind"


def with_id_column(n: int = 700, seed: int = 2) -> tuple[pd.DataFrame, str]:
    """A unique identifier column (int) and a row-index column that must not be features
    (first, as ``df.to_csv()`` with its default index writes it: an empty header name)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = np.where(x @ np.array([1.0, -1.0, 0.5]) + rng.normal(scale=0.7, size=n) > 0, "1", "0")
    return pd.DataFrame({"Unnamed: 0": np.arange(n),
                         "customer_id": rng.permutation(np.arange(100000, 100000 + n)), "f1": x[:, 0].round(3),
                         "f2": x[:, 1].round(3), "f3": x[:, 2].round(3), "churned": y}), "churned"


def free_text(n: int = 800, seed: int = 3) -> tuple[pd.DataFrame, str]:
    """A free-text job title (hundreds of distinct values), a comment column, a constant,
    and 2 % of rows without a label (survey answers never scored)."""
    rng = np.random.default_rng(seed)
    title = [f"{rng.choice(TITLES)} {rng.integers(1, 400)}" for _ in range(n)]
    comment = [" ".join(rng.choice(["good", "late", "paid", "call", "again", "ok"], size=5))
               for _ in range(n)]
    income = rng.lognormal(10, 0.4, n).round(0)
    age = rng.integers(18, 70, n)
    y = np.where(_logit((income - income.mean()) / income.std() - 0.03 * (age - 40)) >
                 rng.random(n), "good", "bad").astype(object)
    y[rng.random(n) < 0.02] = None
    return pd.DataFrame({"job title": title, "comment": comment, "income": income, "age": age,
                         "source": "web", "outcome": y}), "outcome"


def small(n: int = 150, seed: int = 4) -> tuple[pd.DataFrame, str]:
    """150 rows: every split is small, drift tests must not flag noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = np.where(x[:, 0] + 0.7 * x[:, 1] + rng.normal(scale=0.8, size=n) > 0, "pos", "neg")
    df = pd.DataFrame(x.round(3), columns=["m1", "m2", "m3", "m4"])
    df["kind"] = rng.choice(["p", "q"], size=n)
    df["y"] = y
    return df, "y"


def wide_with_gaps(n: int = 1200, cols: int = 55, seed: int = 5) -> tuple[pd.DataFrame, str]:
    """55 feature columns with heavy gaps (up to 60% missing), whole-number floats among them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, cols))
    w = rng.normal(size=cols) * (rng.random(cols) < 0.3)
    y = np.where(x @ w + rng.normal(scale=1.0, size=n) > 0, "B", "A")
    df = pd.DataFrame(x.round(3), columns=[f"feat_{i:02d}" for i in range(cols)])
    df["count_int"] = rng.integers(0, 9, n).astype(float)  # whole numbers, read as float
    for i, col in enumerate(df.columns):
        share = 0.6 if i % 7 == 0 else 0.15 if i % 3 == 0 else 0.0
        df.loc[rng.random(n) < share, col] = np.nan
    df["batch"] = 7  # a constant
    df["target"] = y
    return df, "target"


def booleans_semicolons(n: int = 700, seed: int = 8) -> tuple[pd.DataFrame, str]:
    """True/False columns with gaps and a True/False target, ids like ``0001_01``, a cabin
    code of many values, numbers with ``?`` for gaps, numbers with a blank (``" "``) for
    gaps, words after a space, and an empty column without a header (a ``;`` at the end of
    every line): written with ``;`` between fields (:data:`CSV_OPTIONS`), as spreadsheets in
    many locales export. pandas reads both columns of numbers with gaps as text."""
    rng = np.random.default_rng(seed)
    cryo = rng.choice(np.array([True, False, None], dtype=object), n, p=[0.35, 0.62, 0.03])
    vip = rng.choice(np.array([True, False, None], dtype=object), n, p=[0.05, 0.92, 0.03])
    spend = np.where(cryo == True, 0.0, rng.gamma(1.0, 300.0, n).round())  # noqa: E712
    spend[rng.random(n) < 0.05] = np.nan
    y = _logit(2.0 * (cryo == True) - 0.003 * np.nan_to_num(spend) + 0.3) > rng.random(n)  # noqa: E712
    return pd.DataFrame({
        "PassengerId": [f"{i:04d}_0{rng.integers(1, 3)}" for i in range(n)],
        "HomePlanet": rng.choice(np.array(["Earth", "Europa", "Mars", None], dtype=object), n,
                                 p=[0.5, 0.25, 0.22, 0.03]),
        "CryoSleep": cryo, "VIP": vip, "RoomService": spend,
        "Cabin": [f"{rng.choice(list('ABCDEFG'))}/{rng.integers(0, 1800)}/{rng.choice(['P', 'S'])}"
                  for _ in range(n)],
        "Age": rng.integers(0, 80, n),
        # numbers with "?" for gaps ("3.0" and "?" as text to pandas), numbers with " " for
        # gaps (as Telco's TotalCharges: "29.85" and " "), and words written after "; " (" A":
        # the category "A")
        "Rating": np.where(rng.random(n) < 0.05, "?", rng.choice(["1.0", "2.0", "3.0"], n)),
        "Deck": rng.choice([" A", " B", " C"], n),
        "Total": np.where(rng.random(n) < 0.03, " ", [f"{v:.2f}" for v in rng.gamma(2.0, 900.0, n)]),
        "Transported": y, "": np.nan}), "Transported"


def no_signal(n: int = 600, seed: int = 6) -> tuple[pd.DataFrame, str]:
    """Labels independent of the features: a model at prior level, whose gate must fail."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(n, 4)).round(3), columns=["a", "b", "c", "d"])
    df["cls"] = np.where(rng.random(n) < 0.35, "x", "y")
    return df, "cls"


def regression(n: int = 300, seed: int = 7) -> tuple[pd.DataFrame, str]:
    """A numeric target with many distinct values: init must refuse it."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    df["price"] = (df["a"] * 1000 + 5000 + rng.normal(size=n) * 100).round(2)
    return df, "price"


ALL = {"odd_names": odd_names, "multiclass_with_date": multiclass_with_date,
       "with_id_column": with_id_column, "free_text": free_text, "small": small,
       "wide_with_gaps": wide_with_gaps, "booleans_semicolons": booleans_semicolons}
#: how a set is written as CSV (``DataFrame.to_csv`` options), when not as pandas' default
CSV_OPTIONS = {"booleans_semicolons": {"sep": ";"}}
