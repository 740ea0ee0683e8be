"""The simulated stream (simulate/stream.py): seeded, drifting as configured, records as
the service takes them."""

from __future__ import annotations

import pandas as pd
import yaml

from loopline.config.params import Params
from loopline.simulate.stream import Stream, records_of
from tests.helpers import REPO


def params() -> Params:
    return Params.model_validate(yaml.safe_load((REPO / "params.yaml").read_text()))


def pool(n: int = 400) -> pd.DataFrame:
    return pd.read_csv(REPO / "data/credit_data.csv").dropna(subset=["Status"]).head(n)


def test_the_stream_is_seeded_and_drifts_as_configured() -> None:
    p = params()
    sim = p.simulate
    shift, concept = dict(sim.shift), (sim.concept.column, sim.concept.above)
    a = Stream(pool(), p, shift, concept, seed=3)
    b = Stream(pool(), p, shift, concept, seed=3)
    c = Stream(pool(), p, shift, concept, seed=4)
    assert [a.share(k) for k in (0, 3, 4, 5, 8, 30)] == [0.0, 0.0, 0.1, 0.2, 0.45, 0.45]
    for k in (1, 6, 9):
        (fa, la), (fb, lb) = a.draw(k), b.draw(k)
        pd.testing.assert_frame_equal(fa, fb)
        assert (la == lb).all()
    assert not c.draw(1)[0].equals(Stream(pool(), p, shift, concept, seed=3).draw(1)[0])
    frame, labels = a.draw(20)  # 45% new regime: prices up, large loans bad
    base = pool()
    assert frame["Price"].mean() > base["Price"].mean() * 1.1
    big = frame["Amount"] > sim.concept.above
    assert (labels[big] == "bad").mean() > 0.6
    assert set(frame.columns) == set(p.data.feature_columns(p.features.drop)[0]
                                     + p.data.feature_columns(p.features.drop)[1])


def test_records_follow_the_service_contract() -> None:
    p = params()
    frame, _ = Stream(pool(), p, {"Amount": 1.37}, None, seed=0).draw(10)
    recs = records_of(frame, p)
    assert all(isinstance(r["Amount"], int) and isinstance(r["Seniority"], int) for r in recs)
    assert any(r["Income"] is None for r in records_of(pool(400), p))  # NaN goes as null
    assert all(isinstance(r["Home"], str) or r["Home"] is None for r in recs)


def test_traffic_reads_numbers_whose_gaps_the_file_marks_with_text() -> None:
    """A held-back row of a file with "?" among numbers ("3.0", "?" as text) is scaled and
    sent as a number or null: the sandbox reads those columns as ingest does."""
    from loopline.simulate.sandbox import numbers_read

    p = params()
    data = p.data.model_copy(update={"schema_": p.data.schema_.model_copy(update={"columns": {
        **p.data.schema_.columns,
        "Seniority": p.data.schema_.columns["Seniority"].model_copy(
            update={"missing_values": ["?"], "nullable": True})}})})
    raw = pool(6).astype({"Seniority": object})
    raw.loc[raw.index[:3], "Seniority"] = ["?", "3.0", " 12"]
    read = numbers_read(raw, data)
    assert read["Seniority"].iloc[:3].tolist()[1:] == [3.0, 12.0] and pd.isna(read["Seniority"].iloc[0])
    recs = records_of(read[["Seniority", "Home"]], p)
    assert recs[0]["Seniority"] is None and recs[1]["Seniority"] == 3
    plain = pool(6)
    assert numbers_read(plain, p.data) is plain  # no placeholders: the rows as they are
