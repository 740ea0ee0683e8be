"""The pipeline end to end: real git, real `dvc repro`, real ONNX runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tests.helpers import BIN
from tests.helpers.commands import loopline, ran_stages, sh

STAGES = {"ingest", "validate", "prepare", "train", "evaluate", "export", "gate"}


def lock(root: Path) -> dict:
    return yaml.safe_load((root / "dvc.lock").read_text())["stages"]


def test_first_run_produces_every_output(built_instance: Path) -> None:
    root = built_instance
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert metrics["rows"] == 891
    assert 0.75 < metrics["roc_auc"] <= 1.0
    for key in ("accuracy", "precision", "recall", "f1", "log_loss"):
        assert metrics[key] is not None
    assert set(metrics["per_class"]) == {"bad", "good"}
    slices = json.loads((root / "reports/slices.json").read_text())
    assert slices["column"] == "Home" and "owner" in slices["slices"]
    assert "recall" in slices["max_gap"]
    for rel in ("models/model.onnx", "models/card.json", "models/card.md", "reports/evaluation.md",
                "reports/plots/roc.csv", "reports/plots/pr.csv", "reports/plots/confusion.csv",
                "reports/plots/importance.csv", "reports/parity.json", "reports/search.json"):
        assert (root / rel).is_file(), rel
    card = json.loads((root / "models/card.json").read_text())
    stages = lock(root)
    raw_out = {o["path"]: o["md5"] for o in stages["ingest"]["outs"]}
    assert card["data"]["raw_md5"] == raw_out["data/raw/data.parquet"]
    lineage = card["lineage"]["dvc_lock"]
    prepared = {o["path"]: o["md5"] for o in stages["prepare"]["outs"]}
    assert lineage["prepare"]["outs"]["data/prepared/train.parquet"] == prepared[
        "data/prepared/train.parquet"]
    assert lineage["ingest"]["outs"] == {"data/raw/data.parquet": raw_out["data/raw/data.parquet"]}
    assert not any(p.endswith(".py") for st in lineage.values() for p in st["outs"])
    assert card["parity"]["passed"] is True
    assert card["metrics"]["roc_auc"] == metrics["roc_auc"]
    assert card["importance"], "permutation importance is in the card"
    assert set(stages) == STAGES


def test_dvc_metrics_and_plots_work(built_instance: Path) -> None:
    shown = json.loads(sh(str(BIN / "dvc"), "metrics", "show", "--json", cwd=built_instance).stdout)
    flat = json.dumps(shown)
    assert "roc_auc" in flat and "max_gap" in flat
    res = sh(str(BIN / "dvc"), "plots", "show", "--json", cwd=built_instance)
    plots = json.loads(res.stdout)["data"]
    assert set(plots) == {"ROC curve (positive class)", "Precision-recall (positive class)",
                          "Confusion matrix", "Permutation importance"}
    roc = plots["ROC curve (positive class)"][0]["content"]["data"]["values"]
    assert len(roc) > 10 and {"fpr", "tpr"} <= set(roc[0])


def test_noop_repro_reruns_nothing(built_copy: Path) -> None:
    res = sh(str(BIN / "dvc"), "repro", cwd=built_copy)
    assert "Running stage" not in res.stdout
    assert res.stdout.count("didn't change, skipping") == len(STAGES)
    out = loopline("run", "--json", cwd=built_copy).stdout
    doc = json.loads(out)
    assert doc["ok"] and doc["up_to_date"] and ran_stages(out) == set()


def test_model_param_change_reruns_train_and_downstream_only(built_copy: Path) -> None:
    out = loopline("run", "--json", "model.estimator.max_iter=60", cwd=built_copy).stdout
    assert ran_stages(out) == {"train", "evaluate", "export", "gate"}
    assert json.loads(out)["stages"]["prepare"]["state"] == "skipped"


def test_imputation_change_reruns_from_prepare(built_copy: Path) -> None:
    out = loopline("run", "--json", "features.numeric_imputer=mean", cwd=built_copy).stdout
    assert ran_stages(out) == {"prepare", "train", "evaluate", "export", "gate"}
    plan = json.loads((built_copy / "reports/prepare.json").read_text())["imputation"]
    assert plan["Income"]["strategy"] == "mean"


def test_onnx_predicts_like_sklearn(built_instance: Path) -> None:
    import joblib

    from loopline.config.params import load_params
    from loopline.model.runtime import OnnxModel
    from loopline.pipeline.tabular import xy

    params = load_params(built_instance)
    test = pd.read_parquet(built_instance / "data/prepared/test.parquet")
    X, _ = xy(test, params)
    sk = joblib.load(built_instance / "models/model.joblib")
    onnx = OnnxModel(built_instance / "models/model.onnx")
    assert list(onnx.classes) == list(sk.classes_)
    assert (onnx.predict(X) == sk.predict(X)).all()
    assert np.abs(onnx.predict_proba(X) - sk.predict_proba(X)).max() <= 1e-4


def test_corrupted_csv_fails_ingest_with_the_file_named(built_copy: Path) -> None:
    src = built_copy / "data/credit_data.csv"
    lines = src.read_text().splitlines()
    lines[10] = lines[10] + ",17,extra,fields"
    src.write_text("\n".join(lines) + "\n")
    before = (built_copy / "dvc.lock").read_text()
    res = loopline("run", cwd=built_copy, check=False)
    assert res.returncode == 1
    assert "malformed CSV data/credit_data.csv" in res.stderr
    assert "line 11" in res.stderr
    assert "Traceback" not in res.stderr
    assert (built_copy / "dvc.lock").read_text() == before
    assert not list((built_copy / "data/raw").glob("*.tmp"))


def test_schema_violation_fails_validate_and_stops_downstream(built_copy: Path) -> None:
    src = built_copy / "data/credit_data.csv"
    df = pd.read_csv(src)
    df.loc[3, "Age"] = 7
    df.loc[5, "Home"] = "castle"
    df.to_csv(src, index=False)
    train_before = (built_copy / "data/prepared/train.parquet").read_bytes()
    res = loopline("run", "--json", cwd=built_copy, check=False)
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert doc["failed_stage"] == "validate"
    assert "column 'Age' [min]" in doc["error"] and "below the minimum 18" in doc["error"]
    assert "column 'Home' [categories]" in doc["error"] and "'castle'" in doc["error"]
    assert "prepare" not in {k for k, v in doc["stages"].items() if v["state"] == "done"}
    assert not (built_copy / "reports/validate.json").exists()
    assert (built_copy / "data/prepared/train.parquet").read_bytes() == train_before


def test_dvc_exp_run_composes_the_same_params_as_loopline(built_copy: Path) -> None:
    sh(str(BIN / "dvc"), "exp", "run", "-S", "model=logreg", "-S", "search.n_iter=2", cwd=built_copy)
    from_dvc = (built_copy / "params.yaml").read_text()
    loopline("params", "model=logreg", "search.n_iter=2", cwd=built_copy)
    assert (built_copy / "params.yaml").read_text() == from_dvc
    assert yaml.safe_load(from_dvc)["model"]["name"] == "logreg"


def test_isolated_stage_processes_give_the_same_outputs(built_copy: Path, tmp_path: Path) -> None:
    import hashlib
    import shutil

    isolated = tmp_path / "isolated"
    shutil.copytree(built_copy, isolated, symlinks=True)
    # a stage of the user's own (not `loopline stage`) runs in a shell either way
    for root in (built_copy, isolated):
        dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())
        dvc_yaml["stages"]["shout"] = {"cmd": "echo $DVC_STAGE > reports/shout.txt",
                                       "deps": ["models/model.onnx"],
                                       "outs": [{"reports/shout.txt": {"cache": False}}]}
        (root / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    runs = [loopline("run", "--json", "model.estimator.max_iter=60", cwd=built_copy).stdout,
            loopline("run", "--isolated", "--json", "model.estimator.max_iter=60",
                     cwd=isolated).stdout]
    assert ran_stages(runs[0]) == ran_stages(runs[1]) == {"train", "evaluate", "export", "gate",
                                                          "shout"}
    assert [json.loads(r)["stages_in_process"] for r in runs] == [True, False]
    assert [json.loads(r)["stages"]["train"]["summary"]["best_params"] for r in runs][0] == \
        json.loads(runs[1])["stages"]["train"]["summary"]["best_params"]
    for rel in ("models/model.joblib", "models/model.onnx", "reports/metrics.json",
                "reports/slices.json", "reports/importance.json", "reports/shout.txt"):
        digests = {hashlib.md5((root / rel).read_bytes()).hexdigest()
                   for root in (built_copy, isolated)}
        assert len(digests) == 1, rel
    assert (built_copy / "reports/shout.txt").read_text() == "shout\n"
    for root in (built_copy, isolated):
        assert "changed" not in sh(str(BIN / "dvc"), "status", cwd=root).stdout


# ------------------------------------------------------------ errors before or in the first stage


def test_unknown_estimator_fails_before_any_stage(instance: Path) -> None:
    res = loopline("run", "model.estimator._target_=sklearn.ensemble.NoSuchForest", cwd=instance, check=False)
    assert res.returncode == 1
    assert "unknown estimator" in res.stderr and "sklearn.ensemble.NoSuchForest" in res.stderr
    assert not (instance / "data/raw").exists()


def test_missing_data_file(instance: Path) -> None:
    (instance / "data/credit_data.csv").unlink()
    res = loopline("run", "--json", cwd=instance, check=False)
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert doc["ok"] is False
    assert "data/credit_data.csv" in (doc["error"] or "")
    assert not (instance / "data/raw/data.parquet").exists()


def test_a_fresh_clone_reproduces_the_committed_files_byte_for_byte(built_instance: Path,
                                                                    tmp_path: Path) -> None:
    """What CI does on a fresh runner: clone, reproduce (here as a plain `dvc repro` would,
    each stage its own process), and find no committed file changed: no fit times in
    reports/search.json, no commit in models/card.json, Evidently's page the same bytes
    (its hash is in dvc.lock)."""
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(built_instance), str(clone), cwd=tmp_path)
    doc = json.loads(loopline("run", "--isolated", "--json", cwd=clone).stdout)
    # stages whose committed outputs came out the same are skipped by DVC: that is the point
    assert doc["ok"] and {"ingest", "train", "export"} <= ran_stages(json.dumps(doc))
    assert sh("git", "status", "--porcelain", cwd=clone).stdout == ""
    search = json.loads((clone / "reports/search.json").read_text())
    assert "fit_seconds" not in search and search["candidates"]
    assert all("mean_fit_seconds" not in c for c in search["candidates"])
    assert json.loads((clone / ".loopline/timings.json").read_text())["fit_seconds"] > 0
    card = json.loads((clone / "models/card.json").read_text())
    assert "git" not in card["lineage"]
    gate_html = lock(clone)["gate"]["outs"]
    assert gate_html == lock(built_instance)["gate"]["outs"]
