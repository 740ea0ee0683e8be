"""`loopline monitor`: windows with known drift, missing data and accuracy get the expected
RAG status; alerts reach a webhook on 127.0.0.1 and a dead one does not break the run."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import BIN, sh
from loopline.config import MonitorConfig
from loopline.monitoring import monitor as mon

DAY = 86400
UNTIL = 1_800_000_000.0


def reference(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(0, 1, n), "b": rng.exponential(2, n),
                         "k": rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2]),
                         "y": rng.choice(["bad", "good"], n, p=[0.3, 0.7])})


def window(day: int, n: int, *, noise: float, shift: float = 0.0, missing_b: float = 0.0,
           seed: int = 1) -> pd.DataFrame:
    """Records of one day: a score that predicts the label, blurred by ``noise``."""
    rng = np.random.default_rng(seed + day)
    a = rng.normal(shift, 1, n)
    b = rng.exponential(2, n)
    b[rng.random(n) < missing_b] = np.nan
    k = rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2] if shift == 0 else [0.2, 0.3, 0.5])
    score = rng.normal(0, 1, n)
    p_bad = 1 / (1 + np.exp(-(score - 0.85)))
    label = np.where(score + rng.normal(0, noise, n) > 0.85, "bad", "good")
    rows = []
    for i in range(n):
        rows.append({"request_id": f"d{day}-{i}", "idx": 0, "ts": UNTIL - (4 - day) * DAY + i,
                     "model_version": "v1", "inputs": {"a": a[i], "b": None if np.isnan(b[i]) else b[i],
                                                       "k": k[i]},
                     "prediction": "bad" if p_bad[i] >= 0.5 else "good",
                     "probabilities": {"bad": p_bad[i], "good": 1 - p_bad[i]},
                     "latency_ms": 0.3 + 0.01 * (i % 7), "label": label[i], "label_ts": None})
    return pd.DataFrame(rows)


def test_windows_get_the_expected_rag_status() -> None:
    log = pd.concat([window(1, 1500, noise=0.3),                       # clean, accurate
                     window(2, 1500, noise=1.7, missing_b=0.4),        # weaker, gaps in b
                     window(3, 1500, noise=4.0, shift=1.0)])           # drifted, near random
    cfg = MonitorConfig(window="1d", windows=3)
    doc = mon.run(log, reference(), numeric=["a", "b"], categorical=["k"], classes=["bad", "good"],
                  positive="bad", target="y", cfg=cfg, until=UNTIL)
    w1, w2, w3 = doc["windows"]
    assert w1["status"] == "GREEN", w1["reasons"]
    assert w1["performance"]["roc_auc"] > 0.8 and w1["drift_share"] == 0
    assert w2["status"] == "AMBER", w2["reasons"]
    assert 0.7 <= w2["performance"]["roc_auc"] < 0.8
    assert any("b missing in 4" in r for r in w2["reasons"])
    assert w3["status"] == "RED" and w3["performance"]["roc_auc"] < 0.7
    assert {d["column"] for d in w3["drift"] if d["drifted"]} == {"a", "k"}
    assert doc["status"] == "RED" and any(r.startswith("RED: roc_auc") for r in doc["reasons"])
    assert w1["latency_ms"]["p99"] == pytest.approx(0.36, abs=0.01)


def test_no_labels_yet_means_no_performance_grade_and_no_data_is_not_an_alarm() -> None:
    log = window(3, 500, noise=0.3).assign(label=None)
    cfg = MonitorConfig(window="1d", windows=3)
    doc = mon.run(log, reference(), numeric=["a", "b"], categorical=["k"], classes=["bad", "good"],
                  positive="bad", target="y", cfg=cfg, until=UNTIL)
    assert [w["status"] for w in doc["windows"][:2]] == ["NO DATA", "NO DATA"]
    assert doc["windows"][2]["performance"] is None and doc["status"] == "GREEN"


def test_constant_and_invalid_predictions_are_flagged() -> None:
    log = window(3, 300, noise=0.3)
    log["prediction"] = "good"
    log.loc[log.index[:3], "probabilities"] = [{"bad": 1.5, "good": -0.5}] * 3
    doc = mon.run(log, reference(), numeric=["a", "b"], categorical=["k"], classes=["bad", "good"],
                  positive="bad", target="y", cfg=MonitorConfig(window="1d", windows=1), until=UNTIL)
    w = doc["windows"][0]
    assert w["invalid_predictions"] == 3 and w["grades"]["invalid_predictions"] == "RED"
    assert w["grades"]["constant_predictions"] == "AMBER"


# -------------------------------------------------------- the command, with alerts


class Receiver(BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        self.bodies.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def write_log(root: Path, hours_ago: list[float], *, version: str = "v0.1.0",
              informative: bool = True, missing_income: float = 0.0) -> None:
    """A real inference log (the service's writer) of test-split records, half labelled."""
    from loopline.serving.inference_log import InferenceLog

    test = pd.read_parquet(root / "data/prepared/test.parquet")
    card = json.loads((root / "models/card.json").read_text())
    cols = list(card["inputs"])
    log = InferenceLog(root / "logs/inference.sqlite", flush_interval=0.05)
    now = time.time()
    rng = np.random.default_rng(0)
    for h in hours_ago:
        for i, row in enumerate(test[cols + ["Status"]].head(300).to_dict("records")):
            label = row.pop("Status")
            rec = {k: (None if pd.isna(v) else v) for k, v in row.items()}
            if rng.random() < missing_income:
                rec["Income"] = None
            centre = (0.8 if label == "bad" else 0.2) if informative else 0.5
            p_bad = float(np.clip(centre + rng.normal(0, 0.25), 0, 1))
            rid = f"h{h}-{i}"
            log.predictions(rid, now - h * 3600 + i, version, [rec],
                            np.array(["bad" if p_bad >= 0.5 else "good"], dtype=object),
                            np.array([[p_bad, 1 - p_bad]]), ["bad", "good"], 0.4)
            if i % 2 == 0:
                log.feedback([(rid, 0, label)], now)
    log.close()


@pytest.mark.slow
def test_monitor_command_alerts_a_webhook_and_survives_a_dead_one(built_copy: Path) -> None:
    root = built_copy
    write_log(root, [0.5])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret_url = f"http://127.0.0.1:{server.server_port}/hooks/T000/SECRET-PATH"
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("roc_auc: {amber: 0.8, red: 0.7}",
                                                 "roc_auc: {amber: 0.99, red: 0.5}")
                      .replace("amber: 0.8\n      red: 0.7", "amber: 0.99\n      red: 0.5"))
    env = {**os.environ, "LOOPLINE_ALERT_WEBHOOK": secret_url}
    try:
        res = sh(str(BIN / "loopline"), "monitor", "--window", "1h", "--windows", "2", "--json",
                 cwd=root, env=env, check=False)
    finally:
        server.shutdown()
    assert res.returncode == 3, res.stdout[-2000:] + res.stderr[-2000:]  # AMBER
    doc = json.loads(res.stdout)
    assert doc["status"] == "AMBER" and doc["windows"][-1]["labels"] == 150
    assert Receiver.bodies and "AMBER" in Receiver.bodies[0]["text"]
    assert "roc_auc" in Receiver.bodies[0]["text"]
    assert (root / "reports/monitor.html").stat().st_size > 10_000
    for text in (res.stdout, res.stderr, (root / "reports/monitor.json").read_text(),
                 (root / "reports/monitor_audit.jsonl").read_text()):
        assert "SECRET-PATH" not in text

    dead = {**os.environ, "LOOPLINE_ALERT_WEBHOOK": "http://127.0.0.1:9/hooks/SECRET-PATH"}
    res = sh(str(BIN / "loopline"), "monitor", "--window", "1h", "--windows", "2", "--no-html",
             "--json", cwd=root, env=dead, check=False)
    assert res.returncode == 3
    webhook = [a for a in json.loads(res.stdout)["alerts"] if a["channel"] == "webhook"][0]
    assert webhook["delivered"] is False and webhook["attempts"] == 4
    history = (root / "reports/monitor_history.jsonl").read_text().splitlines()
    assert [json.loads(h)["status"] for h in history] == ["AMBER", "AMBER"]
    assert len((root / "reports/alerts.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_act_rolls_back_a_failing_prod_version_and_records_the_imputation(built_copy: Path) -> None:
    root = built_copy
    from conftest import loopline

    loopline("register", cwd=root)
    loopline("promote", "v0.1.0", "--to", "prod", cwd=root)
    (root / "NOTES.md").write_text("a change that retrains nothing\n")
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-q", "-m", "notes", cwd=root)
    loopline("register", cwd=root)
    loopline("promote", "v0.2.0", "--to", "prod", cwd=root)
    write_log(root, [0.5], version="v0.2.0", informative=False, missing_income=0.4)
    res = sh(str(BIN / "loopline"), "monitor", "--window", "1h", "--windows", "1", "--no-html",
             "--act", "--json", cwd=root, check=False,
             env={k: v for k, v in os.environ.items() if k != "LOOPLINE_ALERT_WEBHOOK"})
    assert res.returncode == 4, res.stdout[-2000:] + res.stderr[-2000:]
    doc = json.loads(res.stdout)
    actions = {a["action"]: a for a in doc["actions"]}
    assert [a["feature"] for a in doc["actions"] if a["action"] == "imputation"] == ["Income"]
    assert actions["rollback"]["done"] and actions["rollback"]["from"] == "v0.2.0"
    assert actions["rollback"]["to"] == "v0.1.0" and "roc_auc" in actions["rollback"]["reason"]
    assert actions["imputation"]["feature"] == "Income"
    assert actions["imputation"]["strategy"] == "median" and actions["imputation"]["missing_rate"] > 0.3
    assert loopline("which", "prod", cwd=root).stdout.startswith("v0.1.0")
    history = json.loads(loopline("history", "--stage", "prod", "--json", cwd=root).stdout)
    assert history[0]["event"] == "rollback" and history[0]["version"] == "v0.1.0"
    audit = [json.loads(line) for line in (root / "reports/monitor_audit.jsonl").read_text().splitlines()]
    assert {"rollback", "imputation", "alert"} <= {a["action"] for a in audit}

    again = json.loads(sh(str(BIN / "loopline"), "monitor", "--window", "1h", "--windows", "1",
                          "--no-html", "--act", "--json", cwd=root, check=False).stdout)
    rb = [a for a in again["actions"] if a["action"] == "rollback"][0]
    assert rb["done"] is False and "already replaced" in rb["why"]  # no second rollback


@pytest.mark.slow
def test_act_retrains_on_the_labelled_window_and_promotes_on_a_passed_gate(built_copy: Path) -> None:
    root = built_copy
    from conftest import loopline

    loopline("register", cwd=root)
    loopline("promote", "v0.1.0", "--to", "prod", cwd=root)
    write_log(root, [0.5])
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("amber: 0.8\n      red: 0.7",
                                                 "amber: 0.99\n      red: 0.5"))
    sh("git", "commit", "-qam", "watch closely: AMBER below 0.99", cwd=root)
    rows_before = len((root / "data/credit_data.csv").read_text().splitlines())
    res = sh(str(BIN / "loopline"), "monitor", "--window", "1h", "--windows", "1", "--no-html",
             "--act", "--json", cwd=root, check=False,
             env={k: v for k, v in os.environ.items() if k != "LOOPLINE_ALERT_WEBHOOK"})
    assert res.returncode == 3, res.stdout[-2000:] + res.stderr[-2000:]
    retrain = [a for a in json.loads(res.stdout)["actions"] if a["action"] == "retrain"][0]
    assert retrain["done"], retrain
    assert retrain["version"] == "v0.2.0" and retrain["records"] == 150
    assert len((root / "data/credit_data.csv").read_text().splitlines()) == rows_before + 150
    assert loopline("which", "prod", cwd=root).stdout.startswith("v0.2.0")
    assert "Retrain on 150 labelled records" in sh("git", "log", "-1", "--format=%s", cwd=root).stdout
    assert sh("git", "status", "--porcelain", "--untracked-files=no", cwd=root).stdout == ""
