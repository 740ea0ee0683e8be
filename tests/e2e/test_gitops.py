"""GitOps on a built instance: the review report and the sticky comment (`loopline ci`:
tests/e2e/test_ci_*.py)."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from loopline.gitops import report
from tests.helpers import BIN, REPO
from tests.helpers.commands import loopline, sh

WORKFLOWS = REPO / ".github" / "workflows"


class FakeGitHub(BaseHTTPRequestHandler):
    comments: list[dict] = []
    auth: list[str] = []

    def _send(self, code: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["content-length"])))

    def do_GET(self) -> None:  # noqa: N802
        self.auth.append(self.headers.get("authorization", ""))
        self._send(200, self.comments)

    def do_POST(self) -> None:  # noqa: N802
        self.auth.append(self.headers.get("authorization", ""))
        c = {"id": 100 + len(self.comments), "body": self._body()["body"], "html_url": "http://x/c"}
        self.comments.append(c)
        self._send(201, c)

    def do_PATCH(self) -> None:  # noqa: N802
        cid = int(self.path.rsplit("/", 1)[1])
        c = next(c for c in self.comments if c["id"] == cid)
        c["body"] = self._body()["body"]
        self._send(200, c)

    def log_message(self, *args) -> None:
        pass


def test_sticky_comment_is_created_once_then_updated(built_instance: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeGitHub.comments = [{"id": 7, "body": "someone else's comment"}]
    env = {**os.environ, "GITHUB_TOKEN": "s3cret-token", "GITHUB_REPOSITORY": "acme/model",
           "GITHUB_API_URL": f"http://127.0.0.1:{server.server_port}"}
    try:
        for _ in range(2):
            res = sh(str(BIN / "loopline"), "report", "--base", "HEAD", "--comment", "12",
                     cwd=built_instance, env=env)
            assert "s3cret-token" not in res.stdout + res.stderr
    finally:
        server.shutdown()
    ours = [c for c in FakeGitHub.comments if report.MARKER in c["body"]]
    assert len(FakeGitHub.comments) == 2 and len(ours) == 1
    assert "## loopline report: credit-risk" in ours[0]["body"]
    assert FakeGitHub.auth and all(a == "Bearer s3cret-token" for a in FakeGitHub.auth)


def commit(root: Path, msg: str) -> None:
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-q", "-m", msg, cwd=root)


def test_report_shows_a_worse_metric_and_the_failed_gate(built_copy: Path) -> None:
    root = built_copy
    loopline("register", cwd=root)
    loopline("promote", "v0.1.0", "--to", "prod", cwd=root)
    conf = root / "conf" / "config.yaml"
    conf.write_text(conf.read_text().replace("  - model: hgb", "  - model: logreg"))
    run = loopline("run", cwd=root, check=False)
    assert run.returncode != 0  # the gate failed
    commit(root, "try logistic regression")
    doc = json.loads(loopline("report", "--base", "HEAD~1", "--json", cwd=root).stdout)
    metrics = {m["metric"]: m for m in doc["metrics"]}
    assert metrics["recall"]["direction"] == "worse" and metrics["recall"]["delta"] < 0
    assert doc["gate"]["verdict"] == "fail" and "champion_recall" in doc["gate"]["failed"]
    assert "model.name" in {p["key"] for p in doc["params"]}
    text = loopline("report", "--base", "HEAD~1", cwd=root).stdout
    assert "gate **FAIL**" in text and "🔴 worse" in text and "❌ FAIL" in text
    assert "| `model.name` | `hgb` | `logreg` |" in text
