"""Reloading the served version (serving/reload.py): workers follow, the client reports."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from loopline.model.runtime import IntegrityError
from loopline.serving import bundle as bundles


def _fake_version(entry: dict) -> bundles.ServedVersion:
    """A version without a session: what the reloader compares and swaps."""
    from types import SimpleNamespace

    if entry["version"] == "tampered":
        raise IntegrityError("model tampered: refusing to serve it")
    inputs = {"Age": {"kind": "numeric"}} if entry["version"] != "v-other" else {"Zip": {}}
    return bundles.ServedVersion(version=entry["version"],
                                 model=SimpleNamespace(sha256=entry["sha256"]),
                                 classes=["bad", "good"], inputs=inputs, positive_class="good")


def test_reload_switches_one_worker_and_the_others_follow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loopline.serving import spec as spec_module
    from loopline.serving.reload import Reloader

    monkeypatch.setenv("TOKEN", "s3cret")
    monkeypatch.setattr(spec_module, "resolve_model",
                        lambda root, ref, **kw: {"version": ref or "v1", "sha256": f"sha-{ref}"})
    spec = {"root": str(tmp_path), "ref": None, "model": {"version": "v1", "sha256": "sha-v1"},
            "control": str(tmp_path / "active.json"), "reload_poll": 0.02,
            "admin_token_env": "TOKEN"}
    counted: list[str] = []
    one, other = (Reloader(spec, _fake_version, counted.append) for _ in range(2))
    other.start()
    try:
        assert one.handle("", "v2")[0] == 401
        assert one.handle("Bearer nope", "v2")[0] == 401
        status, body = one.handle("Bearer s3cret", "v2")
        assert (status, body["model_version"], body["previous_version"]) == (200, "v2", "v1")
        assert body["changed"] is True and one.served.version == "v2"
        deadline = time.monotonic() + 10
        while other.served.version != "v2" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert other.served.version == "v2" and counted == ["followed"]
        # a worker started after the reload begins with the version the others serve
        assert Reloader(spec, _fake_version, counted.append).served.version == "v2"
        assert one.handle("Bearer s3cret", "v2")[1]["changed"] is False
        status, body = one.handle("Bearer s3cret", "v-other")  # other inputs: restart needed
        assert status == 400 and "restart the service" in body["error"]
        assert one.handle("Bearer s3cret", "tampered")[0] == 409
        assert one.served.version == "v2"
    finally:
        other.stop()
    monkeypatch.delenv("TOKEN")
    assert one.handle("Bearer s3cret", "v2")[0] == 403  # no token: reload is disabled


def test_reload_without_a_registry_is_refused_with_409(monkeypatch: pytest.MonkeyPatch) -> None:
    from loopline.serving.reload import Reloader

    monkeypatch.setenv("TOKEN", "t")
    spec = {"root": None, "model": {"version": "v1", "sha256": "a"}, "control": None,
            "reload_poll": 1.0, "admin_token_env": "TOKEN"}
    status, body = Reloader(spec, _fake_version, lambda _: None).handle("Bearer t", "prod")
    assert status == 409 and "no registry in this deployment" in body["error"]


def test_reload_client_reports_every_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    """`loopline reload` and the monitor's rollback share this client: one answer each way."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from loopline.serving.reload import request_reload

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["content-length"])
            ref = json.loads(self.rfile.read(length))["ref"]
            if self.headers.get("authorization") != "Bearer tok":
                status, body = 401, b'{"error": "missing or wrong bearer token"}'
            elif ref == "html":
                status, body = 502, b"<html>bad gateway</html>"
            else:
                status, body = 200, json.dumps({"model_version": ref, "previous_version": "v1",
                                                "changed": ref != "v1"}).encode()
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        res = request_reload(url, "x", "NO_SUCH_TOKEN_VAR")
        assert not res.done and "NO_SUCH_TOKEN_VAR is not set" in res.message
        assert res.action() == {"action": "reload", "done": False,
                                "why": "NO_SUCH_TOKEN_VAR not set"}
        monkeypatch.setenv("TOKEN", "tok")
        res = request_reload(url, "v2", "TOKEN")
        assert res.done and res.message == "now serving v2 (was v1)"
        assert res.action() == {"action": "reload", "done": True, "status_code": 200,
                                "model_version": "v2", "why": None}
        assert request_reload(url, "v1", "TOKEN").message == "already serving v1"
        res = request_reload(url, "html", "TOKEN")
        assert not res.done and res.message.startswith("reload refused (502): <html>")
        monkeypatch.setenv("TOKEN", "wrong")
        res = request_reload(url, "v2", "TOKEN")
        assert res.action() == {"action": "reload", "done": False, "status_code": 401,
                                "model_version": None, "why": "missing or wrong bearer token"}
    finally:
        server.shutdown()
        server.server_close()
    res = request_reload(url, "v2", "TOKEN")  # nobody listens any more
    assert not res.done and res.message.startswith("cannot reach") and res.why == "ConnectError"
