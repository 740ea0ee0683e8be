"""The service for real: `loopline serve` (BentoML) on 127.0.0.1, a registry with two versions.

One server, started on prod (v0.1.0) with v0.2.0 in shadow, answers the request tests;
the reload test at the end switches it. Start-up refusal, graceful shutdown and the built
Bento each get a server of their own. The exported bundle is also loaded without a server:
it predicts like its card says and refuses a tampered file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopline.model.runtime import IntegrityError
from loopline.serving import bundle as bundles
from loopline.serving.inference_log import read_predictions
from tests.helpers import BIN
from tests.helpers.commands import loopline, sh
from tests.helpers.server import TOKEN, Server, free_port

RECORD = {"Seniority": 9, "Home": "rent", "Time": 60, "Age": 30, "Marital": "married",
          "Records": "no", "Job": "freelance", "Expenses": 73, "Income": 129.0,
          "Assets": 0.0, "Debt": 0.0, "Amount": 800, "Price": 846}


def commit(root: Path, msg: str) -> None:
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-q", "-m", msg, cwd=root)


@pytest.fixture(scope="module")
def two_versions(built_instance: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v0.1.0 (hgb) assigned to prod, v0.2.0 (logistic regression) registered only."""
    root = tmp_path_factory.mktemp("serving") / "repo"
    shutil.copytree(built_instance, root, symlinks=True)
    loopline("register", cwd=root)
    loopline("promote", "v0.1.0", "--to", "prod", cwd=root)
    conf = root / "conf" / "config.yaml"
    conf.write_text(conf.read_text().replace("  - model: hgb", "  - model: logreg"))
    run = loopline("run", "--json", cwd=root, check=False)  # worse recall than the champion
    assert json.loads(run.stdout)["stages"]["gate"]["state"] == "done"
    commit(root, "logistic regression")
    loopline("register", "--force", "--reason", "second version for the serving tests", cwd=root)
    return root


@pytest.fixture(scope="module")
def server(two_versions: Path):
    srv = Server(two_versions, "--shadow", "v0.2.0").wait_ready()
    yield srv
    srv.stop()


def logged(srv: Server, request_ids: set[str], timeout: float = 10.0):
    """The log rows of ``request_ids`` once all are written (the writer flushes every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        df = read_predictions(srv.log_path)
        df = df[df["request_id"].isin(request_ids)]
        if set(df["request_id"]) == request_ids or time.monotonic() > deadline:
            return df
        time.sleep(0.2)


# ------------------------------------------------------------------------ requests


def test_single_and_batch_predictions_match_onnxruntime(server: Server, two_versions: Path,
                                                        tmp_path: Path) -> None:
    one = server.predict([RECORD])
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["model_version"] == "v0.1.0" and len(body["request_id"]) == 32
    (pred,) = body["predictions"]
    assert set(pred["probabilities"]) == {"bad", "good"}
    assert pred["class"] == max(pred["probabilities"], key=pred["probabilities"].get)

    import pandas as pd

    test = pd.read_parquet(two_versions / "data/prepared/test.parquet").head(200)
    card = json.loads((two_versions / "models/card.json").read_text())
    cols = list(card["inputs"])
    records = [{k: (None if pd.isna(v) else (int(v) if card["inputs"][k]["type"] == "integer" else
                                             float(v) if card["inputs"][k]["kind"] == "numeric" else v))
                for k, v in row.items()} for row in test[cols].to_dict("records")]
    batch = server.predict(records)
    assert batch.status_code == 200, batch.text[:500]
    got = np.array([[p["probabilities"]["bad"], p["probabilities"]["good"]]
                    for p in batch.json()["predictions"]])

    from loopline.model.runtime import OnnxModel

    loopline("get", "v0.1.0", "-o", str(tmp_path / "v1"), cwd=two_versions)
    want = OnnxModel(tmp_path / "v1" / "model.onnx").predict_proba(test[cols])
    assert np.abs(got - want).max() < 1e-9


def test_column_batches_answer_like_records(server: Server) -> None:
    rows = [RECORD, {**RECORD, "Age": 61, "Income": None}, {**RECORD, "Home": None, "Debt": 900.0}]
    columns = {k: [r.get(k) for r in rows] for k in RECORD}
    res = server.client.post("/predict_batch", json={"columns": columns})
    assert res.status_code == 200, res.text
    body = res.json()
    by_records = server.predict(rows).json()["predictions"]
    assert body["predictions"] == [p["class"] for p in by_records]
    assert body["probabilities"] == [[p["probabilities"][c] for c in body["classes"]]
                                     for p in by_records]
    # the file's other columns (the target here) are passthrough: any shape, ignored
    passthrough = server.client.post("/predict_batch", json={"columns": {**columns,
                                                                       "Status": None}})
    assert passthrough.status_code == 200 and passthrough.json()["predictions"] == \
        body["predictions"]
    short = {**columns, "Age": [30, 40]}
    bad = server.client.post("/predict_batch", json={"columns": short})
    assert bad.status_code == 400 and bad.json()["detail"][0]["loc"] == ["columns", "Age"]
    wrong = server.client.post("/predict_batch", json={"columns": {**columns, "Age": [30, "x", 40]}})
    assert wrong.status_code == 400 and ["columns", "Age", 1] in [d["loc"] for d in wrong.json()["detail"]]
    ids = {body["request_id"]}
    df = logged(server, ids)
    assert df.sort_values("idx")["inputs"].tolist()[1]["Age"] == 61 and len(df) == 3


def test_model_endpoint_describes_the_served_version(server: Server) -> None:
    info = server.client.post("/model").json()
    assert info["model_version"] == "v0.1.0" and info["shadow_version"] == "v0.2.0"
    assert info["inputs"]["Home"]["categories"][0] == "ignore"


@pytest.mark.parametrize("payload, field", [
    ({"records": [{**RECORD, "Age": "thirty"}]}, ["records", 0, "Age"]),
    ({"records": [{**RECORD, "Home": "castle"}]}, ["records", 0, "Home"]),
    ({"records": [{**RECORD, "Nickname": "x"}]}, ["records", 0, "Nickname"]),
    ({"records": [{k: v for k, v in RECORD.items() if k != "Time"}]}, ["records", 0, "Time"]),
    ({"records": [RECORD, {**RECORD, "Age": 5}]}, ["records", 1, "Age"]),
    ({"records": []}, ["records"]),
    ({"records": [RECORD] * 1001}, ["records"]),
    ({"rows": [RECORD]}, ["records"]),
])
def test_bad_payloads_get_400_naming_the_field(server: Server, payload: dict, field: list) -> None:
    res = server.client.post("/predict", json=payload)
    assert res.status_code == 400, res.text[:300]
    assert field in [d["loc"] for d in res.json()["detail"]]


def test_malformed_and_oversized_bodies_get_4xx(server: Server) -> None:
    post = server.client.post
    headers = {"content-type": "application/json"}
    assert post("/predict", content=b'{"records": [', headers=headers).status_code == 400
    assert post("/predict", content=b"\xff\xfe\x00", headers=headers).status_code == 400
    assert post("/predict", content=b"", headers=headers).status_code == 400
    assert post("/predict", content=b"[" * 50_000 + b"]" * 50_000, headers=headers).status_code == 400
    huge = b'{"records": [' + b"1," * (9 * 1024 * 1024) + b"1]}"  # 18 MB > max_body_mb
    assert post("/predict", content=huge, headers=headers).status_code == 413

    def chunks(total: int):  # no Content-Length: chunked transfer
        for _ in range(total):
            yield b"1" * 1024 * 1024

    assert post("/predict", content=chunks(20), headers=headers).status_code == 413
    small = json.dumps({"records": [RECORD]}).encode()
    assert post("/predict", content=iter([small[:10], small[10:]]), headers=headers).status_code == 200
    assert server.predict([RECORD]).status_code == 200  # still serving


def test_request_errors_are_logged_for_the_error_rate(server: Server) -> None:
    from loopline.serving.inference_log import read_request_errors

    since = time.time()
    headers = {"content-type": "application/json"}
    post = server.client.post
    assert post("/predict", json={"records": [{**RECORD, "Age": "old"}]}).status_code == 400
    assert post("/predict", content=b'{"records": [', headers=headers).status_code == 400
    assert post("/predict_batch", json={"columns": {"Age": [30, 31], "Income": [1.0]}}).status_code == 400
    assert post("/feedback", json={"labels": [{"request_id": "x"}]}).status_code == 400
    huge = b'{"records": [' + b"1," * (9 * 1024 * 1024) + b"1]}"
    assert post("/predict", content=huge, headers=headers).status_code == 413
    assert server.predict([RECORD]).status_code == 200  # a success is not an error
    deadline = time.monotonic() + 10
    while len(errors := read_request_errors(server.log_path, since=since)) < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(errors["status"].tolist()) == [400, 400, 400, 400, 413]
    assert errors["route"].value_counts().to_dict() == {"/predict": 3, "/predict_batch": 1,
                                                        "/feedback": 1}
    assert set(errors["model_version"]) == {"v0.1.0"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)
records = st.lists(st.dictionaries(st.sampled_from([*RECORD, "extra"]), json_values, max_size=14)
                   | st.fixed_dictionaries({k: st.just(v) | json_values for k, v in RECORD.items()}),
                   max_size=4)
payloads = st.fixed_dictionaries({"records": records}) | json_values


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=payloads)
def test_fuzzed_payloads_never_get_a_5xx(server: Server, payload) -> None:
    res = server.client.post("/predict", content=json.dumps(payload),
                             headers={"content-type": "application/json"})
    assert res.status_code < 500, (payload, res.text[:300])
    assert res.status_code in (200, 400), res.status_code


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=300))
def test_fuzzed_bytes_never_get_a_5xx(server: Server, body: bytes) -> None:
    for endpoint in ("/predict", "/predict_batch", "/feedback"):
        res = server.client.post(endpoint, content=body, headers={"content-type": "application/json"})
        assert 400 <= res.status_code < 500, (body, res.status_code, res.text[:200])


def test_every_2xx_is_logged_with_the_shadow_beside_it(server: Server) -> None:
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: server.predict([{**RECORD, "Age": 20 + i % 50}] * (1 + i % 3)),
                                  range(120)))
    assert all(r.status_code == 200 for r in responses)
    ids = {r.json()["request_id"] for r in responses}
    df = logged(server, ids)
    assert set(df["request_id"]) == ids
    assert len(df) == sum(len(r.json()["predictions"]) for r in responses)
    assert set(df["model_version"]) == {"v0.1.0"}
    assert set(df["shadow_version"]) == {"v0.2.0"} and df["shadow_prediction"].notna().all()
    assert all(r.json()["model_version"] == "v0.1.0" for r in responses)  # never returned
    assert (df["latency_ms"] > 0).all()


def test_feedback_joins_predictions_by_request_id(server: Server) -> None:
    res = server.predict([RECORD, {**RECORD, "Age": 60}]).json()
    rid = res["request_id"]
    fb = server.client.post("/feedback", json={"labels": [
        {"request_id": rid, "label": "bad"}, {"request_id": rid, "index": 1, "label": "good"}]})
    assert fb.status_code == 200 and fb.json() == {"recorded": 2}
    bad = server.client.post("/feedback", json={"labels": [{"request_id": rid, "label": "maybe"}]})
    assert bad.status_code == 400 and bad.json()["detail"][0]["loc"] == ["labels", 0, "label"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        df = logged(server, {rid})
        if df["label"].notna().all() and len(df) == 2:
            break
        time.sleep(0.2)
    assert df.sort_values("idx")["label"].tolist() == ["bad", "good"]


def test_prometheus_metrics(server: Server) -> None:
    server.predict([RECORD])
    text = server.client.get("/metrics").text
    assert 'loopline_predictions_total{model_version="v0.1.0"' in text
    assert "loopline_inference_seconds_bucket" in text
    assert "loopline_feedback_total" in text
    assert 'bentoml_service_request_total{endpoint="/predict"' in text
    assert "bentoml_service_request_duration_seconds_bucket" in text


def test_reload_follows_promote_and_rollback_without_failing_requests(
        server: Server, two_versions: Path) -> None:
    root = two_versions
    assert server.client.post("/admin/reload", json={}).status_code == 401
    wrong = server.client.post("/admin/reload", json={}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401

    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=server.url, timeout=30.0) as c:
            while not stop.is_set():
                r = c.post("/predict", json={"records": [RECORD]})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.append(r.json()["model_version"])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        loopline("promote", "v0.2.0", "--to", "prod", "--force", "--reason", "test", cwd=root)
        out = sh(str(BIN / "loopline"), "reload", "--url", server.url, "--json", cwd=root,
                 env={**os.environ, "LOOPLINE_ADMIN_TOKEN": TOKEN})
        doc = json.loads(out.stdout)
        assert doc["model_version"] == "v0.2.0" and doc["previous_version"] == "v0.1.0"
        wait_for_version(server, "v0.2.0")
        loopline("rollback", "--stage", "prod", cwd=root)
        res = server.client.post("/admin/reload", json={},
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        assert res.status_code == 200 and res.json()["model_version"] == "v0.1.0"
        wait_for_version(server, "v0.1.0")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert statuses and set(statuses) == {200}
    assert {"v0.1.0", "v0.2.0"} <= set(versions)


def test_a_restarted_worker_serves_the_reloaded_version(server: Server) -> None:
    import psutil

    res = server.client.post("/admin/reload", json={"ref": "v0.2.0"},
                             headers={"Authorization": f"Bearer {TOKEN}"})
    assert res.status_code == 200 and res.json()["model_version"] == "v0.2.0"
    wait_for_version(server, "v0.2.0")
    def workers() -> list[int]:
        pids = []
        for p in psutil.Process(server.proc.pid).children(recursive=True):
            try:
                if (p.status() != psutil.STATUS_ZOMBIE
                        and "_bentoml_impl.worker.service" in " ".join(p.cmdline())):
                    pids.append(p.pid)
            except psutil.Error:  # gone meanwhile
                pass
        return pids

    before = workers()
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:  # wait for the replacement worker
        alive = workers()
        if len(alive) == 2 and before[0] not in alive:
            break
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        time.sleep(0.5)
    time.sleep(5)  # the new worker loads its model
    wait_for_version(server, "v0.2.0", timeout=30)


def wait_for_version(server: Server, version: str, timeout: float = 10.0) -> None:
    """Every worker serves ``version`` (20 answers in a row say so)."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < 20:
        assert time.monotonic() < deadline, f"workers did not all switch to {version}"
        try:
            got = server.predict([RECORD]).json()["model_version"]
        except httpx.TransportError:  # a worker starting up
            got = None
        streak = streak + 1 if got == version else 0


# ------------------------------------------------------- start-up and shutdown


def test_a_tampered_model_file_stops_start_up(two_versions: Path, tmp_path: Path) -> None:
    root = two_versions
    spec = json.loads(loopline("serve", "v0.1.0", "--dry-run", "--port", "1", cwd=root).stdout)
    bundle = Path(spec["model"]["bundle"])
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle, tampered)
    data = bytearray((tampered / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (tampered / "model.onnx").write_bytes(bytes(data))
    spec["model"]["bundle"] = str(tampered)
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    res = sh(str(BIN / "bentoml"), "serve", "loopline.serving.service:LooplineService",
             "--port", str(free_port()), cwd=tmp_path, check=False, timeout=120,
             env={**os.environ, "LOOPLINE_SERVE_SPEC": str(spec_path)})
    assert res.returncode != 0
    assert "refusing to serve it" in res.stdout + res.stderr


def test_graceful_shutdown_loses_no_log_record(two_versions: Path) -> None:
    params = two_versions / "params.yaml"
    original = params.read_text()
    # the writer would wait a minute: only the shutdown drain can write these rows
    params.write_text(original.replace("flush_interval: 0.2", "flush_interval: 60")
                      .replace("flush_rows: 2000", "flush_rows: 1000000"))
    try:
        srv = Server(two_versions, "v0.1.0").wait_ready()
    finally:
        params.write_text(original)
    try:
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda i: srv.predict([RECORD] * 3), range(300)))
        time.sleep(1.0)
        assert not srv.log_path.exists() or read_predictions(srv.log_path).empty
    finally:
        srv.stop()
    assert all(r.status_code == 200 for r in responses)
    ids = {r.json()["request_id"] for r in responses}
    df = read_predictions(srv.log_path)
    assert set(df["request_id"]) == ids and len(df) == 900


def test_build_pins_the_model_and_the_bento_serves_it(two_versions: Path, tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml")}
    out = sh(str(BIN / "loopline"), "build", "v0.1.0", "--json", cwd=two_versions, env=env)
    doc = json.loads(out.stdout)
    assert doc["bento"] == "credit-risk-service:v0.1.0" and doc["model"] == "credit-risk:v0.1.0"
    info = json.loads(sh(str(BIN / "bentoml"), "get", doc["bento"], "-o", "json",
                         cwd=tmp_path, env=env).stdout)
    assert info["labels"]["model_version"] == "v0.1.0"
    assert [m["tag"] for m in info["services"][0]["models"]] == ["credit-risk:v0.1.0"]
    port = free_port()
    log = tmp_path / "bento-log.sqlite"
    proc = subprocess.Popen([str(BIN / "bentoml"), "serve", doc["bento"], "--port", str(port)],
                            cwd=tmp_path, env={**env, "LOOPLINE_INFERENCE_LOG": str(log)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                res = httpx.post(f"http://127.0.0.1:{port}/predict", json={"records": [RECORD]})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "bento did not start"
                time.sleep(0.5)
        assert res.status_code == 200 and res.json()["model_version"] == "v0.1.0"
        # no registry inside a Bento: reload says so instead of failing
        rel = httpx.post(f"http://127.0.0.1:{port}/admin/reload", json={},
                         headers={"Authorization": "Bearer x"})
        assert rel.status_code == 403  # no admin token configured
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert read_predictions(log)["model_version"].tolist() == ["v0.1.0"]


# -------------------------------------------------- the exported bundle, without a server


@pytest.fixture()
def bundle(built_instance: Path, tmp_path: Path) -> Path:
    """model.onnx and card.json of a real export (DVC outputs: not in a fresh clone's tree)."""
    dest = tmp_path / "bundle"
    dest.mkdir()
    for name in ("model.onnx", "card.json"):
        shutil.copyfile(built_instance / "models" / name, dest / name)
    return dest


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


def test_served_model_refuses_a_tampered_file(bundle: Path) -> None:
    sha = hashlib.sha256((bundle / "model.onnx").read_bytes()).hexdigest()
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (bundle / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="refusing to serve"):
        bundles.load(bundle, version="v1", sha256=sha)
    with pytest.raises(IntegrityError, match="its model card records"):
        bundles.load(bundle, version="v1", sha256=None)
