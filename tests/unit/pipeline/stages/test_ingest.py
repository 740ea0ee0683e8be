"""Unit tests of the ingest stage: row ids, ordering.

Reading and hashing: unit/pipeline/test_tabular.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loopline.core.errors import LooplineError
from loopline.pipeline.stages import ingest
from loopline.pipeline.stages.ingest import add_row_id, order_rows
from loopline.pipeline.tabular import ROW_ID, content_row_ids, read_table
from tests.helpers import REPO


def small_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "a": [1, 2, 3, 4],
        "b": ["x", "y", "z", "w"],
        "c": [0.5, np.nan, 1.5, 2.5],
    })


# --------------------------------------------------------------------- add_row_id


def test_add_row_id_content_hash_first_column():
    out = add_row_id(small_frame(), None)
    assert list(out.columns) == [ROW_ID, "a", "b", "c"]
    assert out[ROW_ID].tolist() == content_row_ids(small_frame()).tolist()


def test_add_row_id_with_id_column():
    df = pd.DataFrame({"cust": [10, 20, 30], "x": [1, 2, 3]})
    out = add_row_id(df, "cust")
    assert out[ROW_ID].tolist() == ["10", "20", "30"]
    assert "cust" in out.columns  # the id column stays a column


def test_add_row_id_rejects_duplicate_ids():
    df = pd.DataFrame({"cust": [10, 20, 10, 30, 30], "x": range(5)})
    with pytest.raises(LooplineError, match=r"'cust' is not unique: repeated ids 10, 30"):
        add_row_id(df, "cust")


def test_add_row_id_rejects_missing_ids():
    df = pd.DataFrame({"cust": [10, np.nan, 30, np.nan], "x": range(4)})
    with pytest.raises(LooplineError, match=r"'cust' has 2 empty values"):
        add_row_id(df, "cust")


def test_add_row_id_unknown_id_column():
    with pytest.raises(LooplineError, match="'nope' is not a column"):
        add_row_id(small_frame(), "nope")


def test_add_row_id_existing_row_id_column():
    df = small_frame().assign(row_id=["r1", "r2", "r3", "r4"])
    with pytest.raises(LooplineError, match="already has a column named 'row_id'"):
        add_row_id(df, None)
    out = add_row_id(df, ROW_ID)
    assert list(out.columns).count(ROW_ID) == 1
    assert out.columns[0] == ROW_ID
    assert out[ROW_ID].tolist() == ["r1", "r2", "r3", "r4"]


# --------------------------------------------------------------------- order_rows


def test_order_rows_by_date_strings_chronologically():
    df = pd.DataFrame({
        ROW_ID: ["r1", "r2", "r3", "r4"],
        "when": ["10/1/2024", "2/15/2024", "3/1/2023", "12/31/2023"],
    }, index=[5, 6, 7, 8])
    out = order_rows(df, "when")
    # lexicographic order would put "10/1/2024" before "12/31/2023"
    assert out["when"].tolist() == ["3/1/2023", "12/31/2023", "2/15/2024", "10/1/2024"]
    assert out.index.tolist() == [0, 1, 2, 3]
    assert out.columns.tolist() == [ROW_ID, "when"]  # no helper column left behind


def test_order_rows_numeric_ties_broken_by_row_id():
    df = pd.DataFrame({ROW_ID: ["c", "a", "b", "d"], "t": [2, 1, 2, 0]})
    out = order_rows(df, "t")
    assert out[ROW_ID].tolist() == ["d", "a", "b", "c"]


def test_order_rows_none_keeps_order_and_resets_index():
    df = pd.DataFrame({ROW_ID: ["z", "a"], "t": [2, 1]}, index=[9, 3])
    out = order_rows(df, None)
    assert out[ROW_ID].tolist() == ["z", "a"]
    assert out.index.tolist() == [0, 1]


def test_order_rows_unknown_column():
    with pytest.raises(LooplineError, match="data.order_column 'ts'"):
        order_rows(pd.DataFrame({ROW_ID: ["a"], "t": [1]}), "ts")


# ------------------------------------------------------------------------- ingest


def test_ingest_pure_function():
    df = pd.DataFrame({"t": [3, 1, 2], "v": [" x", "y", "z "]})
    out = ingest.ingest(df, None, "t")
    assert out.columns[0] == ROW_ID
    assert out["t"].tolist() == [1, 2, 3]
    assert out["v"].tolist() == ["y", "z", "x"]
    assert out[ROW_ID].is_unique


def test_ingest_real_credit_data():
    df = read_table(REPO / "data" / "credit_data.csv")
    out = ingest.ingest(df, None, None)
    assert len(out) == 4454
    assert out[ROW_ID].is_unique
    # same content, different order: same set of ids
    again = ingest.ingest(df.iloc[::-1].reset_index(drop=True), None, None)
    assert set(again[ROW_ID]) == set(out[ROW_ID])
