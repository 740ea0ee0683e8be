"""Alerts of the monitor (monitoring/alerts.py): delivered or reported, never fatal, no URL."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from loopline.config.operations import AlertConfig
from loopline.monitoring import alerts

DOC = {"status": "RED", "reasons": ["RED: roc_auc 0.61"], "generated_at": 1.0,
       "actions": [{"action": "rollback", "done": True}]}


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


@pytest.mark.parametrize("url, error", [
    ("http://a..b.example/hooks/SECRET-TOKEN", "invalid webhook URL (UnicodeError)"),
    ("http://" + "a" * 70 + ".example/SECRET-TOKEN", "invalid webhook URL (UnicodeError)"),
    ("http://xn--a.example/SECRET-TOKEN", "invalid webhook URL"),
    ("http://[::1/SECRET-TOKEN", "invalid webhook URL (InvalidURL)"),
    ("ftp://127.0.0.1/SECRET-TOKEN", "invalid webhook URL (UnsupportedProtocol)"),
    ("SECRET-TOKEN", "invalid webhook URL (UnsupportedProtocol)"),
    ("http://127.0.0.1:{port}/SECRET-TOKEN", "ConnectError"),
])
def test_a_failing_webhook_is_reported_without_its_url(
        url: str, error: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK", url.format(port=refused_port()))
    monkeypatch.setattr(alerts.time, "sleep", lambda s: None)  # no backoff in a unit test
    cfg = AlertConfig(file="reports/alerts.jsonl", webhook_env="HOOK", retries=2, timeout=2.0)
    audit = tmp_path / "reports" / "audit.jsonl"
    outcomes = alerts.deliver(tmp_path, cfg, "m", DOC, ["reports/monitor.json"], audit)
    assert outcomes[0] == {"channel": "file", "delivered": True, "path": "reports/alerts.jsonl"}
    hook = outcomes[1]
    assert hook["channel"] == "webhook" and hook["delivered"] is False
    assert hook["error"].startswith(error)
    assert hook["attempts"] == (3 if error == "ConnectError" else 1)  # a bad URL is not retried
    (line,) = alerts.warnings(outcomes)
    assert line.startswith(f"alert not delivered by webhook: {error}")
    written = audit.read_text() + json.dumps(outcomes) + line
    assert "SECRET-TOKEN" not in written and "a..b" not in written


def test_an_unwritable_alert_file_is_reported_not_raised(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOK", raising=False)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "alerts.jsonl").mkdir()  # a folder where the file should be
    cfg = AlertConfig(file="reports/alerts.jsonl", webhook_env="HOOK")
    outcomes = alerts.deliver(tmp_path, cfg, "m", DOC, [], tmp_path / "reports" / "audit.jsonl")
    assert outcomes[0]["delivered"] is False and "cannot write reports/alerts.jsonl" in outcomes[0]["error"]
    # an unset webhook is a choice, not a failure to warn about
    assert alerts.warnings(outcomes) == [f"alert not delivered by file: {outcomes[0]['error']}"]


def test_a_delivered_alert_says_what_the_monitor_did(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HOOK", f"http://127.0.0.1:{server.server_port}/hook")
        cfg = AlertConfig(file=None, webhook_env="HOOK")
        outcomes = alerts.deliver(tmp_path, cfg, "m", DOC, [], tmp_path / "audit.jsonl")
    finally:
        server.shutdown()
        server.server_close()
    assert outcomes == [{"channel": "webhook", "delivered": True, "attempts": 1}]
    assert alerts.warnings(outcomes) == []
    assert "Actions: rollback (done)" in received[0]["text"]
