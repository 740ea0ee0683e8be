"""`loopline monitor` and `loopline dashboard` on a built instance: alerts reach a webhook on
127.0.0.1 and a dead one does not break the run; --act rolls back, retrains and opens a
pull request."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd

from tests.helpers import BIN
from tests.helpers.commands import loopline, sh
from tests.helpers.instance import default_text, shadow_default


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


def test_act_rolls_back_a_failing_prod_version_and_records_the_imputation(built_copy: Path) -> None:
    root = built_copy
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
    shadow_default(root, "monitor/default.yaml", default_text("monitor/default.yaml").replace(
        "roc_auc: {amber: 0.80, red: 0.70}", "roc_auc: {amber: 0.99, red: 0.50}"))
    loopline("params", cwd=root)
    sh("git", "add", "conf", cwd=root)
    sh("git", "commit", "-qam", "watch closely: AMBER below 0.99", cwd=root)


def test_act_retrains_on_the_labelled_window_and_promotes_on_a_passed_gate(built_copy: Path) -> None:
    root = built_copy
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


def test_retraining_in_ci_is_a_pull_request(built_copy: Path, tmp_path: Path) -> None:
    """--retrain-pr: the passed retraining goes to a pushed branch and a pull request; the
    checkout, the registry and prod stay as they were; one open pull request at a time."""
    root = built_copy
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


def test_dashboard_command_without_a_monitor_run(built_instance: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.html"
    res = sh(str(BIN / "loopline"), "dashboard", "-o", str(out), cwd=built_instance)
    assert "NO DATA" in res.stdout and "gate.html" in out.read_text()
