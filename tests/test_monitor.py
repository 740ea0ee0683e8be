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
from loopline.config.operations import MonitorConfig
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


def errors_at(ts: list[float], status: int = 400, route: str = "/predict") -> pd.DataFrame:
    return pd.DataFrame({"ts": ts, "route": route, "status": status, "model_version": "v1"})


def test_failed_requests_give_an_error_rate_graded_apart_from_the_model() -> None:
    log = pd.concat([window(2, 300, noise=0.3, seed=3), window(3, 300, noise=0.3, seed=3)])
    day2, day3 = UNTIL - 2 * DAY, UNTIL - DAY
    errors = pd.concat([errors_at([day2 + i for i in range(6)]),            # 6 / 306: 2% GREEN
                        errors_at([day3 + i for i in range(40)]),           # 40 / 340: AMBER
                        errors_at([day3 + 50 + i for i in range(35)], 500)])  # 75 / 375: 20%
    cfg = MonitorConfig(window="1d", windows=3)
    doc = mon.run(log, reference(), numeric=["a", "b"], categorical=["k"], classes=["bad", "good"],
                  positive="bad", target="y", cfg=cfg, until=UNTIL, errors=errors)
    w2, w3 = doc["windows"][1], doc["windows"][2]
    assert w2["error_rate"] == pytest.approx(6 / 306) and w2["grades"]["error_rate"] == "GREEN"
    assert w2["status"] == "GREEN"
    assert w3["errors"] == {"count": 75, "by_status": {"400": 40, "500": 35},
                            "by_route": {"/predict": 75}}
    assert w3["error_rate"] == pytest.approx(0.2) and w3["status"] == "AMBER", w3["reasons"]
    assert w3["reasons"] == ["AMBER: 75 of 375 prediction requests failed (20.0%; 400: 40, 500: 35; "
                             "GREEN ≤ 0.05, RED > 0.2)"]
    # the model in service is fine on its own records: the error rate is the service's
    assert w3["status_by_version"]["v1"]["status"] == "GREEN"
    assert w3["status_by_version"]["v1"]["reasons"] == []


def test_a_window_where_every_request_failed_is_red_and_few_requests_are_not_graded() -> None:
    log = window(3, 300, noise=0.3, seed=3)
    errors = errors_at([UNTIL - 2 * DAY + i for i in range(30)], 400)
    errors = pd.concat([errors, errors_at([UNTIL - 3 * DAY + i for i in range(5)], 500)])
    cfg = MonitorConfig(window="1d", windows=3)
    doc = mon.run(log, reference(), numeric=["a", "b"], categorical=["k"], classes=["bad", "good"],
                  positive="bad", target="y", cfg=cfg, until=UNTIL, errors=errors)
    w1, w2, w3 = doc["windows"]
    assert w1["status"] == "NO DATA" and w1["error_rate"] == 1.0  # 5 < min_requests: not graded
    assert w2["status"] == "RED" and w2["records"] == 0 and w2["error_rate"] == 1.0
    assert w2["reasons"][0].startswith("RED: 30 of 30 prediction requests failed")
    assert w3["status"] == "GREEN" and w3["errors"]["count"] == 0 and w3["error_rate"] == 0.0
    off = MonitorConfig(window="1d", windows=3, error_rate=None)
    doc = mon.run(log, reference(), numeric=["a", "b"], categorical=["k"], classes=["bad", "good"],
                  positive="bad", target="y", cfg=off, until=UNTIL, errors=errors)
    assert doc["windows"][1]["status"] == "NO DATA" and "error_rate" not in doc["windows"][2]["grades"]


def test_failed_feedback_is_counted_but_not_in_the_rate_of_prediction_requests() -> None:
    log = window(3, 300, noise=0.3, seed=3)
    errors = pd.concat([errors_at([UNTIL - DAY + i for i in range(60)], 400, "/feedback"),
                        errors_at([UNTIL - DAY + 100 + i for i in range(3)], 400)])
    doc = mon.run(log, reference(), numeric=["a", "b"], categorical=["k"], classes=["bad", "good"],
                  positive="bad", target="y", cfg=MonitorConfig(window="1d", windows=1),
                  until=UNTIL, errors=errors)
    w = doc["windows"][0]
    assert w["errors"]["by_route"] == {"/feedback": 60, "/predict": 3} and w["errors"]["count"] == 63
    assert w["error_rate"] == pytest.approx(3 / 303) and w["status"] == "GREEN"


def test_a_red_error_rate_does_not_stop_the_retraining_an_amber_model_needs(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from loopline.monitoring.actions import retrain

    params = SimpleNamespace(monitor=SimpleNamespace(min_labels=50),
                             data=SimpleNamespace(id_column="id", order_column=None))
    window = {"status": "RED", "grades": {"roc_auc": "AMBER", "error_rate": "RED"}}
    out = retrain(tmp_path, params, window, pd.DataFrame(), "prod", service_url=None, push=None,
                  audit_path=tmp_path / "audit.jsonl")
    assert out and out[0]["action"] == "retrain"  # past the status check, to the data's rule
    assert out[0]["why"].startswith("data.id_column/order_column set")
    window = {"status": "RED", "grades": {"roc_auc": "RED", "error_rate": "AMBER"}}
    assert retrain(tmp_path, params, window, pd.DataFrame(), "prod", service_url=None, push=None,
                   audit_path=tmp_path / "audit.jsonl") == []  # RED model: rollback's business


def test_an_amber_error_rate_alone_does_not_retrain(tmp_path: Path) -> None:
    from loopline.monitoring.actions import retrain

    window = {"status": "AMBER", "grades": {"roc_auc": "GREEN", "error_rate": "AMBER"}}
    out = retrain(tmp_path, None, window, pd.DataFrame(), "prod", service_url=None, push=None,
                  audit_path=tmp_path / "audit.jsonl")
    assert out == [{"action": "retrain", "done": False,
                    "why": "the window is AMBER for its error rate only: the service's failures, "
                           "which a new model would not mend"}]


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
              informative: bool = True, missing_income: float = 0.0, fresh: bool = False) -> None:
    """A real inference log (the service's writer) of test-split records, half labelled.

    With ``fresh`` the records are new applicants (Amount changed), not rows the data holds.
    """
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
            if fresh:
                rec["Amount"] = int(rec["Amount"]) + 5 + i % 7
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


def watch_closely(root: Path) -> None:
    """Bands in conf/ (so a retraining's `loopline run` keeps them): AMBER below ROC AUC 0.99."""
    from conftest import default_text, loopline, shadow_default

    shadow_default(root, "monitor/default.yaml", default_text("monitor/default.yaml").replace(
        "roc_auc: {amber: 0.80, red: 0.70}", "roc_auc: {amber: 0.99, red: 0.50}"))
    loopline("params", cwd=root)
    sh("git", "add", "conf", cwd=root)
    sh("git", "commit", "-qam", "watch closely: AMBER below 0.99", cwd=root)


@pytest.mark.slow
def test_act_retrains_on_the_labelled_window_and_promotes_on_a_passed_gate(built_copy: Path) -> None:
    root = built_copy
    from conftest import loopline

    loopline("register", cwd=root)
    loopline("promote", "v0.1.0", "--to", "prod", cwd=root)
    write_log(root, [0.5], fresh=True)
    watch_closely(root)
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
    # the same records are never appended twice (the audit log, and the data itself)
    again = json.loads(sh(str(BIN / "loopline"), "monitor", "--window", "1h", "--windows", "1",
                          "--no-html", "--act", "--json", cwd=root, check=False).stdout)
    retrain = [a for a in again["actions"] if a["action"] == "retrain"]
    assert retrain, (again["status"], again["reasons"], again["actions"])
    assert not retrain[0]["done"] and "waiting for labels: v0.2.0" in retrain[0]["why"]


def test_each_version_is_judged_on_its_own_records() -> None:
    old = window(3, 600, noise=4.0)                                   # near random: AMBER or RED
    new = window(3, 600, noise=0.3, seed=9).assign(model_version="v2")  # accurate
    new["request_id"] = "n" + new["request_id"]
    doc = mon.run(pd.concat([old, new]), reference(), numeric=["a", "b"], categorical=["k"],
                  classes=["bad", "good"], positive="bad", target="y",
                  cfg=MonitorConfig(window="1d", windows=1), until=UNTIL)
    w = doc["windows"][0]
    assert w["status_by_version"]["v2"]["status"] == "GREEN"
    assert w["status_by_version"]["v1"]["status"] in ("AMBER", "RED")
    assert w["status_by_version"]["v2"]["labels"] == 600


def test_retraining_appends_only_records_the_data_lacks(tmp_path: Path) -> None:
    from loopline.monitoring.actions import _new_rows

    (tmp_path / "data").mkdir()
    pd.DataFrame({"y": ["bad", "good"], "a": [1.0, 2.0], "k": ["x", "y"]}).to_csv(
        tmp_path / "data/d.csv", index=False)

    class P:  # the parts of params the function reads
        class data:  # noqa: N801
            source, format, target = "data/d.csv", "auto", "y"

    labelled = pd.DataFrame({"ts": [10.0, 11.0, 12.0, 13.0],
                             "inputs": [{"a": 1, "k": "x"}, {"a": 3.0, "k": "z"},
                                        {"a": 4.0, "k": "x"}, {"a": 2.0, "k": "y"}],
                             "label": ["bad", "good", "bad", "bad"]})
    rows, old, parquet = _new_rows(tmp_path, P, labelled, through=10.5)
    assert not parquet and len(old) == 2
    # 10.0 is older than a previous retrain; the row at 13.0 differs from (2.0, y, good) by label
    assert rows[["a", "k", "y"]].values.tolist() == [[3.0, "z", "good"], [4.0, "x", "bad"],
                                                     [2.0, "y", "bad"]]
    assert rows["_ts"].tolist() == [11.0, 12.0, 13.0]
    rows2, _, _ = _new_rows(tmp_path, P, labelled.assign(inputs=[{"a": 2, "k": "y"}] * 4,
                                                         label="good"), through=0.0)
    assert rows2.empty  # (2, y, good) is in the data already: 2 and 2.0 are the same value


class FakePulls(BaseHTTPRequestHandler):
    """GitHub's pulls endpoints, enough for a retraining pull request."""

    pulls: list[dict] = []
    auth: list[str] = []

    def _send(self, code: int, doc: object) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        self.auth.append(self.headers.get("authorization", ""))
        self._send(200, [p for p in self.pulls if p["state"] == "open"])

    def do_POST(self) -> None:  # noqa: N802
        self.auth.append(self.headers.get("authorization", ""))
        doc = json.loads(self.rfile.read(int(self.headers["content-length"])))
        pr = {"number": len(self.pulls) + 1, "state": "open", "head": {"ref": doc["head"]},
              "base": {"ref": doc["base"]}, "title": doc["title"], "body": doc["body"],
              "html_url": f"https://github.invalid/acme/model/pull/{len(self.pulls) + 1}"}
        self.pulls.append(pr)
        self._send(201, pr)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
def test_retraining_in_ci_is_a_pull_request(built_copy: Path, tmp_path: Path) -> None:
    """--retrain-pr: the passed retraining goes to a pushed branch and a pull request; the
    checkout, the registry and prod stay as they were; one open pull request at a time."""
    root = built_copy
    from conftest import loopline

    upstream = tmp_path / "upstream.git"
    sh("git", "init", "-q", "--bare", str(upstream), cwd=tmp_path)
    sh("git", "remote", "add", "origin", str(upstream), cwd=root)
    loopline("register", cwd=root)
    loopline("promote", "v0.1.0", "--to", "prod", cwd=root)
    write_log(root, [0.5], fresh=True)
    watch_closely(root)
    sh("git", "push", "-q", "origin", "main", cwd=root)
    head = sh("git", "rev-parse", "HEAD", cwd=root).stdout.strip()
    rows_before = len((root / "data/credit_data.csv").read_text().splitlines())
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePulls)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakePulls.pulls, FakePulls.auth = [], []
    env = {**{k: v for k, v in os.environ.items() if k != "LOOPLINE_ALERT_WEBHOOK"},
           "GITHUB_TOKEN": "pr-s3cret", "GITHUB_REPOSITORY": "acme/model",
           "GITHUB_API_URL": f"http://127.0.0.1:{server.server_port}"}
    try:
        res = sh(str(BIN / "loopline"), "monitor", "--window", "1h", "--windows", "1", "--no-html",
                 "--act", "--push", "origin", "--retrain-pr", "--json", cwd=root, check=False, env=env)
        again = sh(str(BIN / "loopline"), "monitor", "--window", "1h", "--windows", "1", "--no-html",
                   "--act", "--push", "origin", "--retrain-pr", "--json", cwd=root, check=False,
                   env=env)
    finally:
        server.shutdown()
    assert res.returncode == 3, res.stdout[-2000:] + res.stderr[-2000:]
    retrain = [a for a in json.loads(res.stdout)["actions"] if a["action"] == "retrain"][0]
    assert retrain["done"] and retrain["pull_request"] == 1, retrain
    branch = retrain["branch"]
    assert branch.startswith("loopline/retrain-")
    (pr,) = FakePulls.pulls
    assert pr["head"]["ref"] == branch and pr["base"]["ref"] == "main"
    assert pr["title"].startswith("Retrain on 150 labelled records") and "AMBER" in pr["body"]
    # the branch is upstream, with the appended rows and the new dvc.lock
    remote = sh("git", "ls-remote", str(upstream), f"refs/heads/{branch}", cwd=root).stdout.split()
    assert remote and remote[0] == retrain["commit"]
    shown = sh("git", "show", f"{retrain['commit']}:data/credit_data.csv", cwd=root).stdout
    assert len(shown.splitlines()) == rows_before + 150
    assert "dvc.lock" in sh("git", "show", "--name-only", "--format=", retrain["commit"], cwd=root).stdout
    # the checkout is back where it was, clean, its outputs restored; nothing registered
    assert sh("git", "rev-parse", "--abbrev-ref", "HEAD", cwd=root).stdout.strip() == "main"
    assert sh("git", "rev-parse", "HEAD", cwd=root).stdout.strip() == head
    assert sh("git", "status", "--porcelain", "--untracked-files=no", cwd=root).stdout == ""
    assert len((root / "data/credit_data.csv").read_text().splitlines()) == rows_before
    assert "up to date" in sh(str(BIN / "dvc"), "status", cwd=root).stdout.lower()
    assert loopline("which", "prod", cwd=root).stdout.startswith("v0.1.0")
    assert "v0.2.0" not in sh("git", "tag", cwd=root).stdout
    # while that pull request is open, no second one
    retrain2 = [a for a in json.loads(again.stdout)["actions"] if a["action"] == "retrain"][0]
    assert not retrain2["done"] and "open already" in retrain2["why"]
    assert len(FakePulls.pulls) == 1
    assert FakePulls.auth and all(a == "Bearer pr-s3cret" for a in FakePulls.auth)
    assert "pr-s3cret" not in res.stdout + res.stderr + again.stdout + again.stderr
