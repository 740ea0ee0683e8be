"""Synthetic customer churn data, for `loopline init` on data other than the reference's."""

from __future__ import annotations

import numpy as np
import pandas as pd


def churn_frame(n: int = 2000, seed: int = 7) -> pd.DataFrame:
    """Customer churn with a strong signal (income, tenure, plan), noise columns and gaps.

    2,000 rows rather than a few hundred: the gate's drift tests compare the training split
    with the held-out split, and on a held-out split of ~100 rows sampling noise alone
    pushes Wasserstein distances past their 0.1 threshold.
    """
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 15, n).round(1)
    tenure = rng.integers(0, 120, n)
    balance = rng.gamma(2.0, 500.0, n).round(2)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.4, 0.35, 0.25])
    logit = (-1.5 - 0.07 * (tenure - 60) + 0.12 * (50 - income) + 2.5 * (plan == "basic")
             - 2.0 * (plan == "pro") + 0.0004 * (balance - 1000))
    df = pd.DataFrame({
        "income": income, "tenure": tenure, "balance": balance, "plan": plan,
        "region": rng.choice(["north", "south", "east", "west"], n),
        "channel": rng.choice(["web", "store", "phone"], n),
        "paperless": rng.choice(["no", "yes"], n),
        "churn": np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no"),
    })
    df.loc[rng.random(n) < 0.1, "income"] = np.nan
    df.loc[rng.random(n) < 0.05, "plan"] = None
    df.loc[rng.random(n) < 0.05, "channel"] = None
    return df
