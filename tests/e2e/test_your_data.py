"""A new user's data, from a CSV to a served model with init's defaults and no edits.

Each synthetic set (tests/helpers/synthetic.py) has one trait of real data sets: column
names a CSV may hold, five classes and a date, id columns, free text, 150 rows, 55 columns
with heavy gaps. Each goes init -> run -> register -> promote -> serve -> POST /predict with
rows of the file itself, as ``df.to_dict("records")`` gives them (NaN sent as null). A set
without signal must fail its gate, and register must refuse it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from loopline.pipeline.tabular import as_text
from tests.e2e.test_serving import Server
from tests.helpers import synthetic
from tests.helpers.commands import loopline, sh
from tests.helpers.instance import fast_settings, shadow_default

# the smallest search that is still a search: keeps the whole module within minutes
SMALL_SEARCH = """\
method: random
n_iter: 2
cv: 3
scoring: roc_auc
n_jobs: 1
halving_factor: 3
backend: local
dask_scheduler: null
"""


def _records(df: pd.DataFrame, target: str, n: int = 40) -> list[dict]:
    """Rows of the user's file as pandas gives them: NaN (float gaps) sent as null."""
    rows = df.drop(columns=[target]).head(n).to_dict("records")
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in rows]


def _instance(tmp_path: Path, name: str, *extra: str) -> tuple[Path, pd.DataFrame, str, dict]:
    df, target = getattr(synthetic, name)()
    csv = tmp_path / f"{name}.csv"
    options = synthetic.CSV_OPTIONS.get(name, {})
    df.to_csv(csv, index=False, **options)
    doc = json.loads(loopline("init", "inst", "--data", str(csv), "--target", target, "--json",
                              *extra, cwd=tmp_path).stdout)
    repo = tmp_path / "inst"
    fast_settings(repo)
    shadow_default(repo, "search/random.yaml", SMALL_SEARCH)
    loopline("params", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-q", "-m", "small search", cwd=repo)
    return repo, pd.read_csv(csv, **options), target, doc


@pytest.mark.parametrize("name", list(synthetic.ALL))
def test_your_data_from_csv_to_served_predictions(tmp_path: Path, name: str) -> None:
    repo, df, target, init = _instance(tmp_path, name)
    roles = {d["column"]: d["role"] for d in init["decisions"]}
    run = loopline("run", "--json", cwd=repo, check=False)
    doc = json.loads(run.stdout)
    assert run.returncode == 0 and doc["gate"] == {"verdict": "pass", "failed": []}, \
        (doc.get("error"), doc.get("output_tail"), doc["gate"])
    # rows without a label (free_text has some) are left out of training, and counted
    assert doc["stages"]["ingest"]["summary"]["unlabelled"] == int(df[target].isna().sum())
    gate = json.loads((repo / "reports/gate.json").read_text())
    assert any(c["kind"] == "baseline" for c in gate["checks"])
    assert "class-prior model" in (repo / "reports/gate.md").read_text()
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-q", "-m", "first model", cwd=repo)
    assert json.loads(loopline("register", "--json", cwd=repo).stdout)["version"] == "v0.1.0"
    loopline("promote", "v0.1.0", "--to", "prod", cwd=repo)

    card = json.loads((repo / "models/card.json").read_text())
    if name == "booleans_semicolons":  # numbers whose gaps the file marks with text
        assert card["inputs"]["Rating"]["missing_values"] == ["?"]
        assert "; gaps: `?`" in (repo / "models/card.md").read_text()
    features = [c for c, r in roles.items() if r == "feature"]
    assert sorted(card["inputs"]) == sorted(features)  # the user's own names
    assert target in card["passthrough"]  # the file's other columns may come along
    records = _records(df, target)  # every column of the file but the target, as pandas has them
    srv = Server(repo, "prod", "--workers", "1").wait_ready()
    try:
        res = srv.predict(records)
        assert res.status_code == 200, res.text
        preds = res.json()["predictions"]
        assert len(preds) == len(records)
        classes = set(as_text(df[target].dropna()))  # True/False: the classes true and false
        assert set(json.dumps(preds[0])) and set(preds[0]["probabilities"]) == classes
        bad = srv.predict([{**records[0], "no such column": 1}])
        assert bad.status_code == 400 and "no such column" in bad.text
        labelled = df.head(5).to_dict("records")  # the target too: accepted and ignored
        labelled = [{k: (None if isinstance(v, float) and math.isnan(v) else v)
                     for k, v in r.items()} for r in labelled]
        assert srv.predict(labelled).status_code == 200
    finally:
        srv.stop()


def test_what_init_decided_per_set(tmp_path: Path) -> None:
    """The traits are recognised: ids, dates, free text and constants are not features."""
    expect = {"with_id_column": {"Unnamed: 0": "id", "customer_id": "left out"},
              "booleans_semicolons": {"PassengerId": "id", "CryoSleep": "feature",
                                      "Cabin": "left out", "Rating": "feature",
                                      "Deck": "feature", "Total": "feature",
                                      "Unnamed: 11": "left out"},
              "multiclass_with_date": {"signup_date": "order"},
              "free_text": {"job title": "left out", "comment": "left out", "source": "left out"},
              "wide_with_gaps": {"batch": "left out", "count_int": "feature"}}
    for name, want in expect.items():
        df, target = getattr(synthetic, name)()
        df.to_csv(tmp_path / f"{name}.csv", index=False, **synthetic.CSV_OPTIONS.get(name, {}))
        doc = json.loads(loopline("init", name, "--data", f"{name}.csv", "--target", target,
                                  "--json", cwd=tmp_path).stdout)
        roles = {d["column"]: d["role"] for d in doc["decisions"]}
        assert {c: roles[c] for c in want} == want, name
        if name == "free_text":  # rows without a label: counted, left out of training
            unlabelled = int(df[target].isna().sum())
            assert doc["unlabelled"] == unlabelled > 0
            assert f"{unlabelled} rows have no outcome" in (
                tmp_path / name / "conf" / "data" / "free-text.yaml").read_text()
        if name == "multiclass_with_date":
            assert doc["positive_class"] is None and doc["order_column"] == "signup_date"
        if name == "booleans_semicolons":
            assert doc["positive_class"] == "true" and doc["reading"] == ["fields split by ';'"]
            schema = yaml.safe_load((tmp_path / name / "params.yaml").read_text())["data"]["schema"]
            assert schema["columns"]["VIP"] == {"type": "boolean", "nullable": True}
            # numbers with gaps marked by text: pandas gives the rows "3.0", "?", "29.85", " "
            assert schema["columns"]["Rating"] == {"type": "integer", "min": 0, "nullable": True,
                                                   "missing_values": ["?"]}
            assert schema["columns"]["Total"] == {"type": "float", "min": 0, "nullable": True,
                                                  "missing_values": [""]}


def test_a_set_without_signal_fails_its_gate_and_is_not_registered(tmp_path: Path) -> None:
    repo, _, _, _ = _instance(tmp_path, "no_signal")
    res = loopline("run", "--json", cwd=repo, check=False)
    doc = json.loads(res.stdout)
    assert res.returncode == 1 and doc["gate"]["verdict"] == "fail"
    assert "prior_roc_auc" in doc["gate"]["failed"]
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-q", "-m", "a model at prior level", cwd=repo)
    reg = loopline("register", cwd=repo, check=False)
    assert reg.returncode != 0 and "gate" in reg.stderr.lower()
    assert "missing" not in reg.stderr
