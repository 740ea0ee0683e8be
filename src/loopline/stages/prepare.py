"""prepare: typed columns, the seeded stratified split, and the imputation plan.

The split goes to data/prepared (train and test Parquet, with row ids). Imputation,
scaling and encoding are *not* applied here: they are fitted steps of the one scikit-learn
Pipeline built in train, so the exported ONNX model carries them. This stage reports what
that imputation will do on the training split (fill values per column, missing counts), so
a change of the imputation policy shows up here first and reruns everything after it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from loopline.artifacts import Outputs
from loopline.config import DataConfig, FeaturesConfig, Params, Schema, Split
from loopline.errors import LooplineError
from loopline.stages.ingest import ROW_ID, as_text
from loopline.stages.validate import parse_boolean, parse_numeric


def coerce(df: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Cast validated columns to their schema types: numbers to float64, the rest to str.

    Missing values stay missing (NaN for numbers, None for text); booleans become 0/1.
    """
    out = pd.DataFrame({ROW_ID: df[ROW_ID].astype(str).to_numpy()})
    for name, rule in schema.columns.items():
        col = df[name]
        if rule.type == "boolean":
            out[name] = parse_boolean(col)[0].to_numpy()
        elif rule.numeric:
            out[name] = parse_numeric(col)[0].to_numpy()
        else:
            out[name] = pd.Series(as_text(col).to_numpy(), dtype=object)
    return out


def split(df: pd.DataFrame, target: str, cfg: Split) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded train/test split, stratified on the target when configured and possible."""
    from sklearn.model_selection import train_test_split

    strat = df[target] if cfg.stratify else None
    if strat is not None:
        counts = strat.value_counts()
        if counts.min() < 2:
            raise LooplineError(
                f"cannot stratify the split on {target!r}: class {counts.idxmin()!r} has only "
                f"{int(counts.min())} row (set data.split.stratify: false or add data)"
            )
    try:
        train, test = train_test_split(df, test_size=cfg.test_size, random_state=cfg.seed,
                                       stratify=strat, shuffle=True)
    except ValueError as err:
        raise LooplineError(f"cannot split the data with data.split: {err}") from None
    return train.reset_index(drop=True), test.reset_index(drop=True)


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
    from loopline.artifacts import md5_file, read_json

    report_path = root / params.paths.reports / "validate.json"
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
    prepared = params.paths.prepared
    with Outputs(root) as out:
        out.parquet(f"{prepared}/train.parquet", train)
        out.parquet(f"{prepared}/test.parquet", test)
        out.json(f"{params.paths.reports}/prepare.json", report)
    return {"train_rows": report["train_rows"], "test_rows": report["test_rows"]}
