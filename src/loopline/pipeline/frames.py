"""Turning prepared splits into what the model sees: features (model frame) and labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from loopline.config.params import Params


def feature_columns(params: Params) -> tuple[list[str], list[str]]:
    """Numeric and categorical feature columns, in schema order."""
    return params.data.feature_columns(params.features.drop)


def xy(df: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, np.ndarray]:
    """Model frame and string labels of a prepared split."""
    from loopline.model.features import to_model_frame

    numeric, categorical = feature_columns(params)
    X = to_model_frame(df, numeric, categorical)
    y = df[params.data.target].astype(str).to_numpy()
    return X, y


def load_split(root: Path, params: Params, name: str) -> pd.DataFrame:
    """A prepared split (``train`` or ``test``) as written by the prepare stage."""
    return pd.read_parquet(root / params.paths.prepared / f"{name}.parquet")
