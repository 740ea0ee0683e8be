"""prepare: typed columns, the seeded stratified split, and the imputation plan.

The split goes to data/prepared (train and test Parquet, with row ids). Imputation,
scaling and encoding are *not* applied here: they are fitted steps of the one scikit-learn
Pipeline built in train, so the exported ONNX model carries them. This stage reports what
that imputation will do on the training split (fill values per column, missing counts), so
a change of the imputation policy shows up here first and reruns everything after it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from loopline.config.params import Params
from loopline.config.pipeline import DataConfig, FeaturesConfig, Schema, Split
from loopline.core.errors import LooplineError
from loopline.core.files import Outputs, md5_file, read_json
from loopline.core.layout import PREPARE_JSON, VALIDATE_JSON, Layout
from loopline.pipeline.tabular import ROW_ID, as_prepared


def coerce(df: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Cast validated columns to their schema types: numbers to float64, the rest to str.

    Missing values stay missing (NaN for numbers, None for text); booleans become 0/1.
    """
    out = pd.DataFrame({ROW_ID: df[ROW_ID].astype(str).to_numpy()})
    for name, rule in schema.columns.items():
        out[name] = as_prepared(df[name], rule).set_axis(out.index)  # text stays object dtype
    return out


def split(df: pd.DataFrame, target: str, cfg: Split) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded train/test split, stratified on the target when configured and possible.

    Each row gets a key from a keyed hash of (seed, row id); within each class (or the whole
    frame without stratification) the rows with the smallest keys go to test, as many as
    the class's share of ``ceil(test_size × rows)``, and at least one: a class too rare for
    its share (2 rows of 600) is still in the held-out rows the gate scores. So a row's
    side depends on its own id, not on its position: when labelled rows are appended
    (retraining), almost every earlier row stays where it was, and a champion is not
    evaluated on rows it was trained on.
    """
    import math

    if cfg.method == "time":
        return _time_split(df, cfg)
    strat = df[target] if cfg.stratify else None
    if strat is not None:
        counts = strat.value_counts()
        if counts.min() < 2:
            raise LooplineError(
                f"cannot stratify the split on {target!r}: class {counts.idxmin()!r} has only "
                f"{int(counts.min())} row (set data.split.stratify: false or add data)"
            )
    n = len(df)
    n_test = math.ceil(round(cfg.test_size * n, 9))
    groups = strat.astype(str) if strat is not None else pd.Series("", index=df.index)
    sizes = groups.value_counts().sort_index()
    if not 0 < n_test < n or (strat is not None and min(n_test, n - n_test) < len(sizes)):
        raise LooplineError(f"cannot split the data with data.split: a test set of {n_test} of "
                            f"{n} rows leaves a side with fewer rows than the {len(sizes)} classes")
    # largest remainder: each class gets its share of the test rows, the totals stay exact
    exact = sizes * n_test / n
    alloc = exact.astype(int)
    for cls in (exact - alloc).sort_values(ascending=False, kind="stable").index[: n_test - alloc.sum()]:
        alloc[cls] += 1
    if strat is not None:  # every class is tested: a rare class takes a row from the largest
        for cls in alloc.index[alloc == 0]:
            alloc[cls] += 1
            alloc[alloc.idxmax()] -= 1
    key = _split_keys(df[ROW_ID].astype(str), cfg.seed)
    ranked = pd.DataFrame({"g": groups.to_numpy(), "k": key}, index=df.index).sort_values(["g", "k"])
    rank = ranked.groupby("g").cumcount()
    in_test = (rank < ranked["g"].map(alloc)).reindex(df.index).to_numpy()
    order = np.argsort(key, kind="stable")
    shuffled = df.iloc[order]
    test = shuffled[in_test[order]]
    train = shuffled[~in_test[order]]
    return train.reset_index(drop=True), test.reset_index(drop=True)


def _time_split(df: pd.DataFrame, cfg: Split) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on the earlier rows, test on the latest ``test_size`` (ingest sorted the rows
    by ``order_column``, ties by row id)."""
    import math

    n = len(df)
    n_test = math.ceil(round(cfg.test_size * n, 9))
    if not 0 < n_test < n:
        raise LooplineError(f"cannot split the data with data.split: a test set of {n_test} of "
                            f"{n} rows leaves a side empty")
    return df.iloc[: n - n_test].reset_index(drop=True), df.iloc[n - n_test:].reset_index(drop=True)


def _split_keys(row_ids: pd.Series, seed: int) -> np.ndarray:
    """A uint64 per row id, keyed by the seed (blake2b)."""
    import hashlib

    salt = str(seed).encode()[:16]
    return np.fromiter((int.from_bytes(hashlib.blake2b(r.encode(), digest_size=8, salt=salt).digest(),
                                       "little") for r in row_ids), dtype=np.uint64, count=len(row_ids))


def imputation_plan(train: pd.DataFrame, test: pd.DataFrame, numeric: list[str],
                    categorical: list[str], cfg: FeaturesConfig) -> dict:
    """What imputation will fill per feature, computed on the training split only."""
    plan: dict[str, dict] = {}
    for col in numeric:
        values = train[col]
        if cfg.numeric_imputer == "mean":
            fill: object = round(float(values.mean()), 6)
        elif cfg.numeric_imputer == "median":
            fill = round(float(values.median()), 6)
        else:
            fill = f"mean of {cfg.knn_neighbors} nearest rows"
        plan[col] = {"kind": "numeric", "strategy": cfg.numeric_imputer, "fill": fill,
                     "missing_train": int(values.isna().sum()), "missing_test": int(test[col].isna().sum())}
    for col in categorical:
        values = train[col]
        if cfg.categorical_imputer == "most_frequent":
            mode = values.dropna().mode()
            fill = str(sorted(mode)[0]) if len(mode) else "missing"
        else:
            fill = "missing"
        plan[col] = {"kind": "categorical", "strategy": cfg.categorical_imputer, "fill": fill,
                     "missing_train": int(values.isna().sum()), "missing_test": int(test[col].isna().sum())}
    return plan


def prepare(raw: pd.DataFrame, data: DataConfig, features: FeaturesConfig
            ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The pure part of the stage: typed frame, split, and the report."""
    typed = coerce(raw, data.schema_)
    typed = typed[typed[data.target].notna()]
    train, test = split(typed, data.target, data.split)
    numeric, categorical = data.feature_columns(features.drop)
    report = {
        "train_rows": len(train),
        "test_rows": len(test),
        "features": {"numeric": numeric, "categorical": categorical},
        "class_balance": {
            "train": train[data.target].value_counts(normalize=True).round(4).sort_index().to_dict(),
            "test": test[data.target].value_counts(normalize=True).round(4).sort_index().to_dict(),
        },
        "imputation": imputation_plan(train, test, numeric, categorical, features),
        "scale": features.scale,
    }
    return train, test, report


def check_validated(root: Path, params: Params) -> None:
    """Refuse data/raw unless validate passed on exactly these bytes."""
    report_path = Layout.of(root, params.paths).report(VALIDATE_JSON)
    if not report_path.is_file():
        raise LooplineError(f"{params.paths.raw} has not been validated: run `dvc repro validate` first")
    report = read_json(report_path)
    if not report.get("passed") or report.get("data_md5") != md5_file(root / params.paths.raw):
        raise LooplineError(
            f"{params.paths.raw} changed since validate passed: run `dvc repro` to validate it again"
        )


def run(params: Params, root: Path) -> dict:
    check_validated(root, params)
    raw = pd.read_parquet(root / params.paths.raw)
    train, test, report = prepare(raw, params.data, params.features)
    lay = Layout.of(root, params.paths)
    with Outputs(root) as out:
        out.parquet(lay.split("train"), train)
        out.parquet(lay.split("test"), test)
        out.json(lay.report(PREPARE_JSON), report)
    return {"train_rows": report["train_rows"], "test_rows": report["test_rows"]}
