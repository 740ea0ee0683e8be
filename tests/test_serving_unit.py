"""Serving parts without a server: input contract, feeds, inference log, request errors,
model integrity, reload."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from loopline.model import feeds as onnx_feeds
from loopline.model.runtime import IntegrityError
from loopline.serving import bundle as bundles
from loopline.serving import contract
from loopline.serving.inference_log import (
    InferenceLog,
    features,
    read_predictions,
    read_request_errors,
)

INPUTS = {
    "Age": {"kind": "numeric", "type": "integer", "nullable": False, "min": 18.0, "max": 100.0},
    "Income": {"kind": "numeric", "type": "float", "nullable": True, "min": 0.0},
    "Home": {"kind": "categorical", "type": "category", "nullable": True,
             "categories": ["owner", "rent"]},
    "Records": {"kind": "categorical", "type": "category", "nullable": False,
                "categories": ["no", "yes"]},
}
GOOD = {"Age": 30, "Income": 120.5, "Home": "rent", "Records": "no"}


def validator(inputs: dict, max_batch: int) -> TypeAdapter:
    """Validation of a /predict payload's records, as BentoML does it in the service."""
    return TypeAdapter(contract.records_type(contract.record_type(inputs), max_batch))


@pytest.fixture(scope="module")
def adapter():
    return validator(INPUTS, max_batch=3)


def errors(adapter, payload) -> list[tuple]:
    with pytest.raises(ValidationError) as info:
        adapter.validate_python(payload)
    return [(e["loc"], e["type"]) for e in info.value.errors()]


def test_contract_accepts_valid_and_nullable_records(adapter) -> None:
    assert adapter.validate_python([GOOD]) == [GOOD]
    sparse = {"Age": 18, "Records": "yes"}  # nullable fields may be left out
    assert adapter.validate_python([sparse, {**sparse, "Income": None, "Home": None}])
    assert adapter.validate_python([{**GOOD, "Income": 3}])[0]["Income"] == 3.0  # int is a number


@pytest.mark.parametrize("bad, loc, kind", [
    ({**GOOD, "Age": "30"}, (0, "Age"), "int_type"),              # no string coercion
    ({**GOOD, "Age": 30.5}, (0, "Age"), "int_type"),              # integer column
    ({**GOOD, "Age": True}, (0, "Age"), "int_type"),              # no bool coercion
    ({**GOOD, "Age": 17}, (0, "Age"), "greater_than_equal"),      # range
    ({**GOOD, "Income": -1.0}, (0, "Income"), "greater_than_equal"),
    ({**GOOD, "Income": float("inf")}, (0, "Income"), "finite_number"),
    ({**GOOD, "Home": "castle"}, (0, "Home"), "literal_error"),   # category
    ({**GOOD, "Records": None}, (0, "Records"), "literal_error"),  # not nullable
    ({**GOOD, "Extra": 1}, (0, "Extra"), "extra_forbidden"),      # unknown field
    ({k: v for k, v in GOOD.items() if k != "Age"}, (0, "Age"), "missing"),
])
def test_contract_rejects_with_field_level_errors(adapter, bad, loc, kind) -> None:
    assert (loc, kind) in errors(adapter, [bad])


def test_integers_beyond_float64_precision_are_rejected(adapter) -> None:
    unbounded = validator({"n": {"kind": "numeric", "type": "integer", "nullable": False}}, 2)
    assert unbounded.validate_python([{"n": 2**53}]) == [{"n": 2**53}]
    with pytest.raises(ValidationError):
        unbounded.validate_python([{"n": 10**20}])


def test_an_unserialisable_record_does_not_stop_the_log(tmp_path: Path) -> None:
    log = InferenceLog(tmp_path / "log.sqlite", flush_interval=0.01)
    _queue(log, "huge", [{**GOOD, "Age": 10**30}])  # orjson refuses it
    _queue(log, "after", [GOOD])
    assert log.flush(10.0) and log._thread.is_alive()
    log.close()
    df = read_predictions(tmp_path / "log.sqlite")
    assert set(df["request_id"]) == {"huge", "after"}


def test_contract_bounds_the_batch(adapter) -> None:
    assert errors(adapter, []) == [((), "too_short")]
    assert errors(adapter, [GOOD] * 4) == [((), "too_long")]


def test_feeds_mark_missing_values_for_the_imputers() -> None:
    feeds = onnx_feeds.from_records([GOOD, {"Age": 40, "Records": "yes"}], ["Age", "Income"],
                                    ["Home"])
    assert feeds["Age"].dtype == np.float64 and feeds["Age"].shape == (2, 1)
    assert np.isnan(feeds["Income"][1, 0]) and feeds["Income"][0, 0] == 120.5
    assert feeds["Home"].tolist() == [["rent"], [""]]


class FakeRuntime:
    def run_records(self, records):
        n = len(records)
        return np.array(["bad"] * n, dtype=object), np.tile([0.75, 0.25], (n, 1))

    def run_columns(self, columns, n):
        return self.run_records(range(n))


class FakeVersion:
    version = "v9"
    classes = ["bad", "good"]
    model = FakeRuntime()


def _queue(log: InferenceLog, rid: str, records: list[dict]) -> None:
    n = len(records)
    log.predictions(rid, time.time(), "v1", records, np.array(["good"] * n, dtype=object),
                    np.tile([0.2, 0.8], (n, 1)), ["bad", "good"], 0.5)


def test_inference_log_close_writes_everything_queued(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = InferenceLog(path, flush_interval=30.0, flush_rows=10**6)  # no flush before close
    for i in range(500):
        _queue(log, f"r{i}", [GOOD, {**GOOD, "Age": 50}])
    log.feedback([("r3", 1, "bad")], time.time())
    log.close()
    df = read_predictions(path)
    assert len(df) == 1000 and df["request_id"].nunique() == 500
    row = df[(df.request_id == "r3") & (df.idx == 1)].iloc[0]
    assert row["inputs"]["Age"] == 50 and row["label"] == "bad"
    assert row["probabilities"] == {"bad": 0.2, "good": 0.8}
    assert row["prediction"] == "good" and row["model_version"] == "v1"


def test_request_errors_are_written_and_read_back_by_time(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = InferenceLog(path, flush_interval=30.0)
    log.request_error(100.0, "/predict", 400, "v1")
    log.request_error(200.0, "/feedback", 413)
    log.request_error(300.0, "/predict_batch", 500, "v2")
    log.close()
    df = read_request_errors(path, since=150.0, until=300.0)
    assert df.to_dict("records") == [{"ts": 200.0, "route": "/feedback", "status": 413,
                                      "model_version": None}]
    assert read_request_errors(path)["status"].tolist() == [400, 413, 500]
    # a log written before request errors were recorded has no such table: unknown
    old = tmp_path / "old.sqlite"
    sqlite3.connect(old).execute("CREATE TABLE requests (ts REAL)").connection.commit()
    assert read_request_errors(old) is None  # unknown, not zero


def test_request_errors_middleware_records_each_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from loopline.serving import request_errors

    seen: list[tuple[str, int]] = []
    monkeypatch.setattr(request_errors, "SINKS",
                        [lambda ts, route, status: seen.append((route, status))])

    def app_answering(status: int, then: BaseException | None = None):
        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            if then is not None:
                raise then
        return app

    def app_raising(exc: BaseException):
        async def app(scope, receive, send):
            raise exc
        return app

    async def call(app, path: str = "/predict") -> None:
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            pass

        try:
            await request_errors.RequestErrors(app)({"type": "http", "path": path}, receive, send)
        except (RuntimeError, asyncio.CancelledError):
            pass

    async def scenario() -> None:
        await call(app_answering(200))
        await call(app_answering(400), "/predict_batch")
        await call(app_answering(422), "/admin/reload")  # not an inference route
        await call(app_answering(400, then=RuntimeError("after the answer")))  # once, not twice
        await call(app_raising(RuntimeError("bug")), "/feedback")
        await call(app_raising(asyncio.CancelledError()))  # BentoML's timeout
        request_errors.SINKS[:] = [lambda *a: 1 / 0]  # a broken sink never breaks a response
        await call(app_answering(400))

    asyncio.run(scenario())
    assert seen == [("/predict_batch", 400), ("/predict", 400), ("/feedback", 500), ("/predict", 504)]


def test_inference_log_retries_while_the_file_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = InferenceLog(path, flush_interval=0.05)
    blocker = sqlite3.connect(path, timeout=0.1)
    blocker.execute("BEGIN EXCLUSIVE")
    log._conn.execute("PRAGMA busy_timeout=50")  # fail fast while locked, then retry
    _queue(log, "locked", [GOOD])
    time.sleep(0.5)
    assert log.written == 0 and log.write_failures > 0
    blocker.rollback()
    blocker.close()
    assert log.flush(10.0)
    log.close()
    assert read_predictions(path)["request_id"].tolist() == ["locked"]


def test_inference_log_scores_the_shadow_off_the_response_path(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    shadow = FakeVersion()
    log = InferenceLog(path, flush_interval=0.05, shadow=lambda: shadow)
    _queue(log, "a", [GOOD])
    _queue(log, "b", [GOOD, GOOD])
    log.close()
    df = read_predictions(path)
    assert set(df["shadow_version"]) == {"v9"} and set(df["shadow_prediction"]) == {"bad"}
    assert set(df["prediction"]) == {"good"}
    assert df["shadow_probabilities"][0] == {"bad": 0.75, "good": 0.25}


def test_inference_log_reads_column_batches_back_as_records(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    shadow = FakeVersion()
    log = InferenceLog(path, flush_interval=0.05, shadow=lambda: shadow)
    columns = {"Age": [30, 41, 52], "Home": ["rent", None, "owner"]}
    log.predictions("cols", time.time(), "v1", contract.ColumnRecords(columns, 3),
                    np.array(["good", "bad", "good"], dtype=object),
                    np.array([[0.1, 0.9], [0.7, 0.3], [0.2, 0.8]]), ["bad", "good"], 1.0)
    log.feedback([("cols", 2, "bad")], time.time())
    log.close()
    df = read_predictions(path)
    assert df["inputs"].tolist() == [{"Age": 30, "Home": "rent"}, {"Age": 41, "Home": None},
                                     {"Age": 52, "Home": "owner"}]
    assert df["prediction"].tolist() == ["good", "bad", "good"]
    assert df["probabilities"][1] == {"bad": 0.7, "good": 0.3}
    assert df["label"].tolist()[2] == "bad" and df["shadow_prediction"].tolist() == ["bad"] * 3
    assert features(df)["Age"].tolist() == [30, 41, 52]


def test_columns_contract_and_lengths() -> None:
    from pydantic import TypeAdapter

    ta = TypeAdapter(contract.columns_type(INPUTS, max_batch=3))
    ok = {"Age": [30, 40], "Records": ["no", "yes"], "Home": [None, "rent"]}
    assert ta.validate_python(ok) == ok  # Income (nullable) may be left out
    with pytest.raises(ValidationError) as info:
        ta.validate_python({"Age": [30, "x"], "Records": ["no", None], "Zip": [1]})
    locs = {e["loc"] for e in info.value.errors()}
    assert {("Age", 1), ("Records", 1), ("Zip",)} <= locs
    with pytest.raises(ValidationError):
        ta.validate_python({"Age": [30] * 4, "Records": ["no"] * 4})  # over max_batch
    assert contract.column_length(ok) == (2, [])
    n, bad = contract.column_length({"Age": [1, 2, 3], "Records": ["no"], "Home": [None] * 3})
    assert n == 3 and [b["loc"] for b in bad] == [["columns", "Records"]]
    feeds = onnx_feeds.from_columns(ok, 2, ["Age", "Income"], ["Home"])
    assert np.isnan(feeds["Income"]).all() and feeds["Home"].tolist() == [[""], ["rent"]]


def test_inference_log_is_written_by_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    logs = [InferenceLog(path, flush_interval=0.01) for _ in range(2)]

    def work(k: int) -> None:
        for i in range(300):
            _queue(logs[k], f"w{k}-{i}", [GOOD])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for log in logs:
        log.close()
    assert len(read_predictions(path)) == 600


@pytest.fixture()
def bundle(built_instance: Path, tmp_path: Path) -> Path:
    """model.onnx and card.json of a real export (DVC outputs: not in a fresh clone's tree)."""
    dest = tmp_path / "bundle"
    dest.mkdir()
    for name in ("model.onnx", "card.json"):
        shutil.copyfile(built_instance / "models" / name, dest / name)
    return dest


@pytest.mark.slow
def test_served_model_predicts_like_the_card_says(bundle: Path) -> None:
    card = json.loads((bundle / "card.json").read_text())
    sha = hashlib.sha256((bundle / "model.onnx").read_bytes()).hexdigest()
    served = bundles.load(bundle, version="v1", sha256=sha)
    assert served.classes == card["classes"] and set(served.inputs) == set(card["inputs"])
    record = {"Seniority": 9, "Home": "rent", "Time": 60, "Age": 30, "Marital": "married",
              "Records": "no", "Job": "freelance", "Expenses": 73, "Income": 129.0,
              "Assets": 0.0, "Debt": 0.0, "Amount": 800, "Price": 846}
    labels, proba = served.model.run_records([record, {**record, "Income": None, "Job": None}])
    assert labels.shape == (2,) and proba.shape == (2, 2)
    assert np.allclose(proba.sum(axis=1), 1.0)


@pytest.mark.slow
def test_served_model_refuses_a_tampered_file(bundle: Path) -> None:
    sha = hashlib.sha256((bundle / "model.onnx").read_bytes()).hexdigest()
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (bundle / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="refusing to serve"):
        bundles.load(bundle, version="v1", sha256=sha)
    with pytest.raises(IntegrityError, match="its model card records"):
        bundles.load(bundle, version="v1", sha256=None)


# ------------------------------------------------------------------------------ reload


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
