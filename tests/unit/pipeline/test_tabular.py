"""Unit tests of the shared tabular helpers: reading tables, row ids, text, parsing values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loopline.core.errors import LooplineError
from loopline.pipeline.tabular import (
    content_row_ids,
    csv_delimiter,
    csv_encoding,
    normalise_objects,
    parse_numeric,
    read_table,
    write_table,
)


def small_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "a": [1, 2, 3, 4],
        "b": ["x", "y", "z", "w"],
        "c": [0.5, np.nan, 1.5, 2.5],
    })


# ---------------------------------------------------------------------------- read_table


def test_read_csv(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a,b\n1, x\n2,y\n")
    df = read_table(p)
    assert list(df.columns) == ["a", "b"]
    assert df["a"].tolist() == [1, 2]
    assert df["b"].tolist() == ["x", "y"]  # skipinitialspace


def test_read_tsv(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text("a\tb\n1\tx\n")
    df = read_table(p)
    assert list(df.columns) == ["a", "b"] and df.shape == (1, 2)


def test_missing_file(tmp_path):
    with pytest.raises(LooplineError, match=r"data file not found: data/nope\.csv"):
        read_table(tmp_path / "nope.csv", shown_as="data/nope.csv")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_bytes(b"")
    with pytest.raises(LooplineError, match=r"data file is empty: .*empty\.csv"):
        read_table(p)


def test_header_only(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("a,b\n")
    with pytest.raises(LooplineError, match="header but no rows"):
        read_table(p)


def test_ragged_row_is_malformed_csv(tmp_path):
    p = tmp_path / "rag.csv"
    p.write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(LooplineError, match=r"malformed CSV .*rag\.csv: .*line 3"):
        read_table(p)


def test_every_row_one_field_longer_than_header_is_malformed(tmp_path):
    p = tmp_path / "shift.csv"
    p.write_text("a,b\n1,2,3\n4,5,6\n")
    with pytest.raises(LooplineError, match="malformed CSV"):
        read_table(p)


def test_binary_garbage_is_malformed_csv(tmp_path):
    p = tmp_path / "img.csv"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\xfd" + bytes(range(256)))
    with pytest.raises(LooplineError, match=r"malformed CSV .*img\.csv: not UTF-8"):
        read_table(p)


def test_unnamed_column_is_malformed(tmp_path):
    p = tmp_path / "u.csv"
    p.write_text("a,,c\n1,2,3\n")
    with pytest.raises(LooplineError, match=r"1 column\(s\) without a header name"):
        read_table(p)


def test_a_trailing_delimiter_makes_an_empty_column_which_is_kept(tmp_path):
    p = tmp_path / "trail.csv"  # as public exports have it: a delimiter at the end of every line
    p.write_text("id,a,b,\n7,1,x,\n9,2,y,\n")
    df = read_table(p)
    assert list(df.columns) == ["id", "a", "b", "Unnamed: 3"] and df["Unnamed: 3"].isna().all()


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_the_delimiter_is_found_from_the_first_lines(tmp_path, sep):
    p = tmp_path / "d.csv"
    p.write_text(sep.join(["fixed acidity", "alcohol", "note", "quality"]) + "\n"
                 + "".join(sep.join([f"{7 + i / 10}", "9.4", f'"a, b {i}"', "5"]) + "\n"
                           for i in range(100)))
    assert csv_delimiter(p) == sep
    df = read_table(p)
    assert list(df.columns) == ["fixed acidity", "alcohol", "note", "quality"]
    assert df.shape == (100, 4) and df["note"].iloc[3] == "a, b 3" and df["alcohol"].dtype == float
    write_table(df.head(2), p)  # rewritten (a retraining appends rows) with its own delimiter
    assert p.read_text().splitlines()[0] == sep.join(df.columns)


def test_text_that_is_not_utf8_is_read_as_windows_or_latin1_text(tmp_path):
    p = tmp_path / "cp.csv"
    p.write_bytes("city;price;note\nMálaga;3;\u20ac 5\nZürich;4;ok\n".encode("cp1252"))
    assert csv_encoding(p) == "cp1252"
    df = read_table(p)
    assert df["city"].tolist() == ["Málaga", "Zürich"] and df["note"].iloc[0] == "\u20ac 5"
    write_table(df, p)  # rewritten as it was
    assert csv_encoding(p) == "cp1252" and read_table(p).equals(df)
    raw = tmp_path / "raw.csv"
    raw.write_bytes(b"a,b\n\x81x,1\n")  # undefined in cp1252
    assert csv_encoding(raw) == "latin-1" and read_table(raw)["a"].iloc[0] == "\x81x"
    utf = tmp_path / "utf.csv"
    utf.write_text("a,b\nMálaga,1\n", encoding="utf-8")
    assert csv_encoding(utf) == "utf-8" and read_table(utf)["a"].iloc[0] == "Málaga"


def test_commas_win_and_a_quoted_newline_is_one_row(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('a,b;c,d\n1,"x;y\nz",3\n' + "2,w;v,4\n" * 70)
    assert csv_delimiter(p) == ","
    assert list(read_table(p).columns) == ["a", "b;c", "d"]
    one = tmp_path / "one.csv"
    one.write_text("only\n1\n2\n")
    assert csv_delimiter(one) == "," and list(read_table(one).columns) == ["only"]


def test_unknown_extension(tmp_path):
    p = tmp_path / "data.xlsx"
    p.write_bytes(b"PK\x03\x04")
    with pytest.raises(LooplineError, match=r"cannot tell the format of .*data\.xlsx"):
        read_table(p)


def test_explicit_format_overrides_extension(tmp_path):
    p = tmp_path / "data.txt"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(LooplineError, match="cannot tell the format"):
        read_table(p)
    assert read_table(p, "csv").shape == (1, 2)


def test_parquet_round_trip(tmp_path):
    df = small_frame()
    p = tmp_path / "d.parquet"
    df.to_parquet(p, index=False)
    got = read_table(p)
    pd.testing.assert_frame_equal(got, df, check_dtype=False)
    assert got["a"].dtype.kind == "i" and got["c"].dtype.kind == "f"


def test_parquet_named_csv_fails_cleanly(tmp_path):
    p = tmp_path / "d.parquet"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(LooplineError, match=r"cannot read parquet file .*d\.parquet"):
        read_table(p)


# ----------------------------------------------------------------------- content row ids


def test_content_ids_are_16_hex_and_distinct():
    ids = content_row_ids(small_frame())
    assert ids.str.fullmatch(r"[0-9a-f]{16}").all()
    assert ids.is_unique


def test_content_ids_stable_under_row_reordering_and_index():
    df = small_frame()
    ids = dict(zip(df["b"], content_row_ids(df), strict=True))
    shuffled = df.sample(frac=1.0, random_state=3)
    shuffled.index = [100, 7, 55, -1]
    ids2 = dict(zip(shuffled["b"], content_row_ids(shuffled), strict=True))
    assert ids == ids2


def test_content_ids_independent_of_column_order():
    df = small_frame()
    assert content_row_ids(df).tolist() == content_row_ids(df[["c", "a", "b"]]).tolist()


def test_content_ids_change_with_one_value():
    df = small_frame()
    df2 = df.copy()
    df2.loc[0, "a"] = 99
    a, b = content_row_ids(df), content_row_ids(df2)
    assert a[0] != b[0]
    assert a[1:].tolist() == b[1:].tolist()


def test_content_ids_same_from_csv_and_parquet_export(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,c\n1,x,0.5\n2,,\n3,z,1.5\n")
    from_csv = read_table(csv)
    pq = tmp_path / "d.parquet"
    from_csv.to_parquet(pq, index=False)
    assert content_row_ids(from_csv).tolist() == content_row_ids(read_table(pq)).tolist()


def test_content_ids_stable_when_a_row_with_a_gap_is_appended():
    old = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    new = pd.concat([old, pd.DataFrame({"a": [np.nan], "b": ["z"]})], ignore_index=True)
    assert content_row_ids(new).tolist()[:2] == content_row_ids(old).tolist()


def test_duplicate_rows_get_occurrence_suffixes():
    df = pd.DataFrame({"a": [1, 2, 1, 1], "b": ["x", "y", "x", "x"]})
    ids = content_row_ids(df)
    assert ids.is_unique
    base = ids[0]
    assert ids[2] == f"{base}-1"
    assert ids[3] == f"{base}-2"
    assert "-" not in ids[1]


# --------------------------------------------------------------------- normalise_objects


def test_stray_string_in_numeric_column_kept_as_text(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("age,name\n30, ann\n41,bob\nforty,cy\n,dan\n")
    df = normalise_objects(read_table(p))
    assert df["age"].tolist()[:3] == ["30", "41", "forty"]
    assert pd.isna(df["age"].iloc[3])
    assert df["name"].tolist() == ["ann", "bob", "cy", "dan"]
    # Parquet can store it and the stray value survives as text
    out = tmp_path / "raw.parquet"
    df.to_parquet(out, index=False)
    back = pd.read_parquet(out)
    assert back["age"].tolist()[2] == "forty"


def test_normalise_objects_strips_and_keeps_numbers():
    df = pd.DataFrame({"mixed": [1, " a ", None, 2.5], "num": [1.0, 2.0, np.nan, 4.0]})
    out = normalise_objects(df)
    assert out["mixed"].tolist()[:2] == ["1", "a"]
    assert pd.isna(out["mixed"].iloc[2])
    assert out["mixed"].iloc[3] == "2.5"
    assert out["num"].dtype == np.float64  # numeric columns untouched
    assert df["mixed"].iloc[1] == " a "  # input not mutated


# ------------------------------------------------------------------------- parse_numeric


def test_parse_numeric_text_zero_and_one():
    parsed, bad = parse_numeric(pd.Series(["0", "1", "2"], dtype=object))
    assert parsed.tolist() == [0.0, 1.0, 2.0]
    assert not bad.any()


def test_parse_numeric_text_and_numbers():
    parsed, bad = parse_numeric(pd.Series(["3", " 4.5 ", "x", None], dtype=object))
    assert parsed.iloc[:2].tolist() == [3.0, 4.5]
    assert parsed.iloc[2:].isna().all()
    assert bad.tolist() == [False, False, True, False]
    parsed, bad = parse_numeric(pd.Series([1, 2, 3]))
    assert parsed.dtype == np.float64 and not bad.any()
