"""`loopline simulate`: a seeded drifting stream, and the whole loop against a live service
ending with the expected events in `loopline history`."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, loopline, sh
from loopline.cli.simulate import _runs
from loopline.config.params import Params
from loopline.simulate.report import render
from loopline.simulate.run import drift_score
from loopline.simulate.stream import Stream, records_of


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


def test_drift_score_puts_every_method_on_one_scale() -> None:
    assert drift_score({"kind": "distance", "value": 0.2, "threshold": 0.1}) == 2.0
    assert drift_score({"kind": "p-value", "value": 0.05, "threshold": 0.05}) == 1.0
    assert drift_score({"kind": "p-value", "value": 0.0, "threshold": 0.05}) > 100
    assert drift_score({"kind": "p-value", "value": 0.5, "threshold": 0.05}) < 1


def test_status_runs_are_summarised() -> None:
    assert _runs(["GREEN", "GREEN", "AMBER", "RED", "RED", "RED", "GREEN"]) == \
        ["GREEN×2", "AMBER", "RED×3", "GREEN"]


def test_simulate_config_is_checked() -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["simulate"]["shift"] = {"Home": 1.2}
    with pytest.raises(ValueError, match="simulate names 'Home', which is not a numeric feature"):
        Params.model_validate(raw)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["simulate"]["label_delay"] = 4
    with pytest.raises(ValueError, match="label_delay must be shorter"):
        Params.model_validate(raw)


def test_a_sandbox_never_replaces_a_directory_it_did_not_make(instance: Path, tmp_path: Path) -> None:
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    res = loopline("simulate", "--workdir", str(keep), cwd=instance, check=False)
    assert res.returncode == 1 and "is not a simulation sandbox" in res.stderr
    assert (keep / "notes.txt").read_text() == "mine"


def _doc() -> dict:
    steps = []
    for k, (st, auc) in enumerate([("GREEN", 0.83), ("AMBER", 0.76), ("RED", 0.6)], start=1):
        steps.append({"step": k, "drift": 0.1 * k, "records": 250, "labels_sent": 250,
                      "served": ["v0.1.0"], "status": st, "reasons": [f"{st}: <b>x</b>"],
                      "roc_auc": auc, "accuracy": 0.7, "labels": 750, "drift_share": 0.1,
                      "drift_scores": {"Price": 0.5 * k}, "drifted": ["Price"] if k > 2 else [],
                      "missing_rate": 0.1, "status_by_version": {}, "events": []})
    return {"seed": 0, "sandbox": "/tmp/x", "seconds": 1.0, "shift": {"Price": 1.4},
            "concept": {"column": "Amount", "above": 1500.0},
            "config": {"records_per_step": 250, "label_delay": 1, "window_steps": 4},
            "steps": steps, "events": [{"step": 2, "event": "retrained", "version": "v0.2.0",
                                        "note": "n"}],
            "registry": [{"event": "promote", "version": "v0.1.0", "forced": False}]}


def test_report_has_its_plots_and_escapes_text() -> None:
    page = render(_doc(), "credit-risk", {"amber": 0.8, "red": 0.7})
    for element in ('<svg id="auc"', '<svg id="status"', '<svg id="drift"', '<svg id="share"',
                    'id="events"', 'id="timeline"', 'id="registry"'):
        assert element in page
    assert page.count('class="point"') == 3 and page.count('class="event"') == 1
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


@pytest.mark.slow
def test_simulate_runs_the_whole_loop_and_history_ends_with_the_rollback(instance: Path,
                                                                         tmp_path: Path) -> None:
    work = tmp_path / "sandbox"
    res = loopline("simulate", "--quick", "--seed", "0", "--workdir", str(work), "--json",
                   cwd=instance, check=False, timeout=1500)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    doc = json.loads(res.stdout)
    statuses = doc["statuses"]
    kinds = [e["event"] for e in doc["events"]]
    # GREEN first; AMBER before the first retraining; the forced model caught and rolled back
    assert statuses[0] == "GREEN"
    first_retrain = next(e for e in doc["events"] if e["event"] == "retrained")
    assert "AMBER" in statuses[: first_retrain["step"]]
    assert statuses[first_retrain["step"] - 1] == "AMBER"
    forced = next(e for e in doc["events"] if e["event"] == "forced")
    rolled = next(e for e in doc["events"] if e["event"] == "rolled back")
    assert kinds.index("retrained") < kinds.index("forced") < kinds.index("rolled back")
    assert forced["version"] == doc["faulty_version"]
    assert rolled["step"] <= forced["step"] + doc["config"]["label_delay"] + 1
    last_good = [e for e in doc["events"] if e["event"] == "retrained" and e["step"] < forced["step"]]
    assert rolled["version"] == last_good[-1]["version"]
    assert "RED" in statuses[forced["step"] - 1:]
    # the registry's own record, as `loopline history` shows it (newest first)
    history = json.loads(loopline("history", "--stage", "prod", "--json", cwd=work).stdout)
    seq = [(e["event"], e["version"], e["forced"]) for e in reversed(history)]
    i = seq.index(("promote", doc["faulty_version"], True))
    assert seq[i + 1] == ("rollback", rolled["version"], False)
    assert seq[0] == ("promote", doc["first_version"], False)
    assert ("promote", first_retrain["version"], False) in seq[:i]
    # the report and the timeline
    page = Path(doc["report"]).read_text()
    assert '<svg id="auc"' in page and page.count('class="point"') == len(statuses)
    assert json.loads(Path(doc["timeline"]).read_text())["statuses"] == statuses
    assert (work / "reports" / "monitor.html").stat().st_size > 10_000  # Evidently's, last window
    # the instance itself is untouched
    assert sh("git", "status", "--porcelain", "--untracked-files=no", cwd=instance).stdout == ""
    assert not sh("git", "tag", cwd=instance).stdout.strip()
    shutil.rmtree(work, ignore_errors=True)
    assert math.isfinite(doc["seconds"])
