"""A canary rollout for real: registry tags, `loopline serve` (BentoML) on 127.0.0.1 splitting
live traffic, the share moved and ended by `loopline rollout` + `loopline reload`.

Two versions of one model (v0.2.0 is registered on a later commit of the same pipeline
outputs), so every answer is the same and only ``model_version`` tells who answered.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from loopline.serving.bundle import ServedVersion
from loopline.serving.inference_log import read_predictions
from loopline.serving.split import Split
from tests.helpers import BIN
from tests.helpers.commands import loopline, sh
from tests.helpers.server import TOKEN, Server

RECORD = {"Seniority": 9, "Home": "rent", "Time": 60, "Age": 30, "Marital": "married",
          "Records": "no", "Job": "freelance", "Expenses": 73, "Income": 129.0,
          "Assets": 0.0, "Debt": 0.0, "Amount": 800, "Price": 846}
N = 2000


def _commit(root: Path, msg: str) -> None:
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-q", "-m", msg, cwd=root)


@pytest.fixture()
def canary(built_copy: Path) -> Path:
    """v0.1.0 in prod, a canary plan declared in conf/, v0.2.0 registered."""
    root = built_copy
    loopline("register", cwd=root)
    loopline("promote", "v0.1.0", "--to", "prod", cwd=root)
    conf = root / "conf" / "config.yaml"
    conf.write_text(conf.read_text() + "\ndeploy:\n  strategy: canary\n  steps: [5, 25, 50]\n")
    loopline("params", cwd=root)
    _commit(root, "canary rollouts")
    loopline("register", cwd=root)
    return root


def _send(url: str, keys: list[str | None]) -> list[tuple[str | None, int, str | None, str]]:
    """POST one record per key (4 at a time): (key, status, model_version, request_id)."""
    def one(c: httpx.Client, key: str | None):  # noqa: ANN202
        body = {"records": [RECORD], **({"key": key} if key else {})}
        r = c.post("/predict", json=body)
        doc = r.json() if r.status_code == 200 else {}
        return key, r.status_code, doc.get("model_version"), doc.get("request_id")

    with httpx.Client(base_url=url, timeout=30.0) as c, ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda k: one(c, k), keys))


def _wait_for_candidate(srv: Server, version: str | None, timeout: float = 20.0) -> None:
    """Every worker has loaded ``version`` as the candidate (None: no rollout): 40 asks of
    /model, 4 at a time
    (several connections, so every worker answers some), without a prediction (no record in
    the log, which a judged step counts)."""
    def asked() -> bool:  # a new client each time: new connections, so other workers too
        with httpx.Client(base_url=srv.url, timeout=30.0) as c, ThreadPoolExecutor(4) as pool:
            return {r.json().get("candidate_version") for r in
                    pool.map(lambda _: c.post("/model", json={}), range(40))} == {version}

    _until_settled(asked, timeout, f"workers did not all load {version}")


#: how long a probe must keep holding before every worker counts as moved: connections may
#: all land on one worker, and another polls the control file every reload_poll (0.5 s)
#: and then loads the model, which takes longer on a busy machine
SETTLE_SECONDS = 2.0


def _until_settled(probe, timeout: float, what: str) -> None:  # noqa: ANN001
    """Wait until ``probe()`` has held on every try for :data:`SETTLE_SECONDS`."""
    deadline = time.monotonic() + timeout
    held_since = None
    while True:
        now = time.monotonic()
        if probe():
            held_since = now if held_since is None else held_since
            if now - held_since >= SETTLE_SECONDS:
                return
        else:
            held_since = None
        assert now < deadline, what
        time.sleep(0.2)


def _binomial(hits: int, n: int, share: float) -> bool:
    p = share / 100.0
    return abs(hits - n * p) <= 4.5 * math.sqrt(n * p * (1 - p))


def _local_split(share: float, candidate: str = "v0.2.0", champion: str = "v0.1.0") -> Split:
    """The service's rule, computed here: which keys the candidate gets at ``share``."""
    def version(v: str) -> ServedVersion:
        return ServedVersion(v, SimpleNamespace(sha256=v), [], {}, None)

    return Split(version(champion), version(candidate), share)


def _wait_for_share(srv: Server, share: float, timeout: float = 20.0,
                    previous: float = 25.0, candidate: str = "v0.2.0",
                    champion: str = "v0.1.0") -> None:
    """Every worker routes at ``share`` (a key only that share sends to the candidate, 20
    answers in a row; for 0, a key that ``previous`` sent to the candidate, 20 answers in a
    row from the champion)."""
    if share:
        split = _local_split(share, candidate, champion)
        lower = _local_split(share - 0.5, candidate, champion)
        key = next(f"probe-{i}" for i in range(100_000)
                   if split.pick(f"probe-{i}", "0" * 32).version == candidate
                   and lower.pick(f"probe-{i}", "0" * 32).version == champion)
    else:
        before = _local_split(previous, candidate, champion)
        key = next(f"probe-{i}" for i in range(100_000)
                   if before.pick(f"probe-{i}", "0" * 32).version == candidate)
    want = candidate if share else champion
    # 40 requests 4 at a time (several connections, so every worker answers some), all from
    # the version ``share`` sends the key to
    _until_settled(lambda: {(s, v) for _, s, v, _ in _send(srv.url, [key] * 40)} == {(200, want)},
                   timeout, f"workers did not all move to {share}%")


def _check_step(srv: Server, share: float, tag: str) -> dict[str, str]:
    """2,000 requests from 1,000 callers: the candidate's share, stickiness, the log."""
    keys = [f"caller-{i % (N // 2)}" for i in range(N)]
    out = _send(srv.url, keys)
    assert {status for _, status, _, _ in out} == {200}
    by_key: dict[str, set[str]] = {}
    for key, _, version, _ in out:
        by_key.setdefault(key, set()).add(version)
    assert all(len(v) == 1 for v in by_key.values()), "a caller switched version within a step"
    hits = sum(v == {"v0.2.0"} for v in by_key.values())
    assert _binomial(hits, len(by_key), share), (hits, len(by_key), share, tag)
    expected = _local_split(share)
    assert all(v == {expected.pick(k, "0" * 32).version} for k, v in by_key.items())
    unkeyed = _send(srv.url, [None] * N)
    assert {s for _, s, _, _ in unkeyed} == {200}
    assert _binomial(sum(v == "v0.2.0" for _, _, v, _ in unkeyed), N, share)
    # every logged record carries the version that answered it
    answered = {rid: v for _, _, v, rid in out[:200]}
    deadline = time.monotonic() + 10
    while True:
        df = read_predictions(srv.log_path, with_feedback=False)
        df = df[df["request_id"].isin(answered)]
        if len(df) == len(answered) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert dict(zip(df["request_id"], df["model_version"], strict=True)) == answered
    return {k: next(iter(v)) for k, v in by_key.items()}


def _gto_stages(root: Path) -> dict:
    from gto import api

    return api.show(str(root))["credit-risk"]["stage"]


def test_a_canary_rollout_splits_moves_and_ends_without_failing_requests(canary: Path) -> None:
    root = canary
    out = loopline("promote", "v0.2.0", "--to", "prod", cwd=root)
    assert "recorded a canary rollout of v0.2.0" in out.stdout and "5% of traffic" in out.stdout
    assert loopline("which", "prod", cwd=root).stdout.strip() == "v0.1.0"
    assert loopline("which", "canary", cwd=root).stdout.strip() == "v0.2.0"
    assert _gto_stages(root) == {"prod": "v0.1.0", "canary": "v0.2.0"}

    srv = Server(root).wait_ready()
    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:  # traffic through every change of share
        with httpx.Client(base_url=srv.url, timeout=30.0) as c:
            i = 0
            while not stop.is_set():
                i += 1
                statuses.append(c.post("/predict", json={"records": [RECORD],
                                                         "key": f"h{i}"}).status_code)

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    try:
        info = srv.client.post("/model", json={}).json()
        assert (info["model_version"], info["candidate_version"], info["share"]) == (
            "v0.1.0", "v0.2.0", 5.0)
        first = _check_step(srv, 5.0, "step 1")
        for t in threads:
            t.start()
        adv = json.loads(loopline("rollout", "advance", "--json", cwd=root).stdout)
        assert (adv["step"], adv["share"], adv["previous_share"]) == (2, 25.0, 5.0)
        env = {**os.environ, "LOOPLINE_ADMIN_TOKEN": TOKEN}
        rel = json.loads(sh(str(BIN / "loopline"), "reload", "--url", srv.url, "--json",
                            cwd=root, env=env).stdout)
        assert rel["model_version"] == "v0.1.0" and rel["share"] == 25.0
        _wait_for_share(srv, 25.0)
        second = _check_step(srv, 25.0, "step 2")
        assert all(second[k] == "v0.2.0" for k, v in first.items() if v == "v0.2.0")
        status = json.loads(loopline("rollout", "status", "--json", cwd=root).stdout)["rollout"]
        assert (status["version"], status["step"], status["share"]) == ("v0.2.0", 2, 25.0)

        out = loopline("rollout", "abort", "--reason", "error rate over 1%", cwd=root)
        assert "all traffic back to v0.1.0" in out.stdout
        res = srv.client.post("/admin/reload", json={},
                              headers={"Authorization": f"Bearer {TOKEN}"})
        assert res.status_code == 200 and res.json()["candidate_version"] is None
        _wait_for_share(srv, 0.0)
        after = _send(srv.url, [f"caller-{i}" for i in range(300)] + [None] * 300)
        assert {(s, v) for _, s, v, _ in after} == {(200, "v0.1.0")}
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join()
        srv.stop()
    assert statuses and set(statuses) == {200}, f"{len(statuses)} requests: {set(statuses)}"
    assert _gto_stages(root) == {"prod": "v0.1.0"}
    assert loopline("which", "canary", cwd=root, check=False).returncode != 0
    history = json.loads(loopline("history", "--stage", "canary", "--json", cwd=root).stdout)
    assert [(e["event"], e["version"]) for e in history] == [
        ("abort", "v0.2.0"), ("advance", "v0.2.0"), ("rollout", "v0.2.0")]
    assert history[0]["reason"] == "error rate over 1%"


def test_a_blue_green_rollout_of_three_steps_completes_into_prod(canary: Path) -> None:
    root = canary
    out = loopline("promote", "v0.2.0", "--to", "prod", "--strategy", "blue_green", cwd=root)
    assert "blue_green rollout of v0.2.0" in out.stdout
    srv = Server(root).wait_ready()
    env = {**os.environ, "LOOPLINE_ADMIN_TOKEN": TOKEN}
    statuses: list[int] = []
    try:
        for share in (5.0, 25.0, 50.0):
            if share != 5.0:
                assert json.loads(loopline("rollout", "advance", "--json",
                                           cwd=root).stdout)["share"] == share
                sh(str(BIN / "loopline"), "reload", "--url", srv.url, cwd=root, env=env)
            _wait_for_share(srv, share)
            out = _send(srv.url, [None] * 1000)
            statuses += [s for _, s, _, _ in out]
            assert _binomial(sum(v == "v0.2.0" for _, _, v, _ in out), 1000, share)
        done = json.loads(loopline("rollout", "advance", "--json", cwd=root).stdout)
        assert done["action"] == "complete" and done["tag"] == "credit-risk#prod#2"
        rel = json.loads(sh(str(BIN / "loopline"), "reload", "--url", srv.url, "--json",
                            cwd=root, env=env).stdout)
        assert (rel["model_version"], rel["candidate_version"]) == ("v0.2.0", None)
        deadline = time.monotonic() + 20
        streak = 0
        while streak < 40:  # every worker serves v0.2.0 alone
            assert time.monotonic() < deadline, "workers did not all move to v0.2.0"
            r = srv.predict([RECORD])
            statuses.append(r.status_code)
            streak = streak + 1 if r.json().get("model_version") == "v0.2.0" else 0
    finally:
        srv.stop()
    assert set(statuses) == {200}
    assert _gto_stages(root) == {"prod": "v0.2.0"}
    assert loopline("which", "prod", cwd=root).stdout.strip() == "v0.2.0"
    events = json.loads(loopline("history", "--json", cwd=root).stdout)
    assert [(e["event"], e["stage"]) for e in events[:5]] == [
        ("complete", "canary"), ("promote", "prod"), ("advance", "canary"),
        ("advance", "canary"), ("rollout", "canary")]


def test_split_shares_over_10000_requests_are_within_one_point() -> None:
    """The service's rule over 10,000 callers and 10,000 request ids (seeded, as uuid4 hex):
    the candidate's share is the declared one ±1 percentage point at every step."""
    import random
    import uuid

    rng = random.Random(18)
    rids = [uuid.UUID(int=rng.getrandbits(128), version=4).hex for _ in range(10_000)]
    for share in (1.0, 5.0, 25.0, 50.0):
        split = _local_split(share)
        keyed = sum(split.pick(f"caller-{i}", rids[i]).version == "v0.2.0"
                    for i in range(10_000))
        unkeyed = sum(split.pick(None, rid).version == "v0.2.0" for rid in rids)
        assert abs(keyed / 100 - share) <= 1.0, (share, keyed)
        assert abs(unkeyed / 100 - share) <= 1.0, (share, unkeyed)


JUDGED = "steps: [20, 50]\n  min_records: 40\n  min_labels: 30\n  criteria: {margin: 0.1}\n"


def _real_records(root: Path, n: int) -> list[dict]:
    import pandas as pd

    from loopline.config.params import load_params
    from loopline.simulate.stream import records_of

    params = load_params(root)
    numeric, categorical = params.data.feature_columns(params.features.drop)
    frame = pd.read_parquet(root / "data/prepared/test.parquet").head(n)
    return records_of(frame[numeric + categorical], params)


def _traffic(srv: Server, records: list[dict], wrong: str | None) -> dict[str, int]:
    """One request per record (keyed), every answer labelled at once: right, except those of
    version ``wrong`` (a faulty candidate, as the labels see it). Waits until the log has
    the records and labels; the count of records per version."""
    answers = []
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        for i, rec in enumerate(records):
            r = c.post("/predict", json={"records": [rec], "key": f"k{time.time_ns()}-{i}"})
            assert r.status_code == 200, r.text
            answers.append(r.json())
        labels = []
        for a in answers:
            cls = a["predictions"][0]["class"]
            other = next(k for k in a["predictions"][0]["probabilities"] if k != cls)
            labels.append({"request_id": a["request_id"],
                           "label": other if a["model_version"] == wrong else cls})
        assert c.post("/feedback", json={"labels": labels}).status_code == 200
    rids = {a["request_id"] for a in answers}
    deadline = time.monotonic() + 20
    while True:
        df = read_predictions(srv.log_path)
        df = df[df["request_id"].isin(rids)]
        if len(df) == len(rids) and df["label"].notna().all():
            break
        assert time.monotonic() < deadline, "the log did not get the step's records"
        time.sleep(0.2)
    counts: dict[str, int] = {}
    for a in answers:
        counts[a["model_version"]] = counts.get(a["model_version"], 0) + 1
    return counts


def _monitor_act(root: Path, srv: Server) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LOOPLINE_ALERT_WEBHOOK"}
    res = sh(str(BIN / "loopline"), "monitor", "--act", "--json", "--no-html", "--window", "1h",
             "--windows", "1", "--log", str(srv.log_path), "--service-url", srv.url,
             cwd=root, check=False, env={**env, "LOOPLINE_ADMIN_TOKEN": TOKEN})
    assert res.returncode in (0, 3, 4), res.stdout[-2000:] + res.stderr[-2000:]
    return json.loads(res.stdout)


def test_the_monitor_completes_a_good_canary_and_aborts_a_faulty_one(canary: Path) -> None:
    root = canary
    conf = root / "conf" / "config.yaml"
    conf.write_text(conf.read_text().replace("steps: [5, 25, 50]\n", JUDGED))
    loopline("params", cwd=root)
    _commit(root, "a canary judged on few records")
    loopline("promote", "v0.2.0", "--to", "prod", cwd=root)
    srv = Server(root).wait_ready()
    records = _real_records(root, 300)
    try:
        # step 1 (20%): the candidate answers as well as the champion
        assert _traffic(srv, records[:260], wrong=None).get("v0.2.0", 0) >= 40
        doc = _monitor_act(root, srv)
        assert doc["rollout"]["decision"] == "advance", doc["rollout"]
        acted = {a["action"]: a for a in doc["actions"]}
        assert acted["rollout"]["done"] and acted["rollout"]["share"] == 50.0
        assert acted["reload"]["done"]
        assert "non-inferior" in acted["rollout"]["reason"]
        _wait_for_share(srv, 50.0)
        # step 2 (50%), the last: complete, v0.2.0 becomes prod
        assert _traffic(srv, records[:120], wrong=None).get("v0.2.0", 0) >= 40
        doc = _monitor_act(root, srv)
        assert doc["rollout"]["decision"] == "complete", doc["rollout"]
        assert doc["rollout"]["candidate"]["records"] >= 40
        assert [a["action"] for a in doc["actions"]][:2] == ["rollout", "reload"]
        completed = doc["actions"][0]["registry_tag"]
        assert loopline("which", "prod", cwd=root).stdout.strip() == "v0.2.0"
        alerts = [json.loads(x) for x in (root / "reports/alerts.jsonl").read_text().splitlines()]
        assert [a["rollout"][0]["decision"] for a in alerts if a.get("rollout")] == [
            "advance", "complete"]

        # a faulty v0.3.0 (every answer of its is wrong) is aborted within its first step
        (root / "NOTES.md").write_text("v0.3.0\n")
        _commit(root, "v0.3.0")
        loopline("register", cwd=root)
        loopline("promote", "v0.3.0", "--to", "prod", cwd=root)
        sh(str(BIN / "loopline"), "reload", "--url", srv.url, cwd=root,
           env={**os.environ, "LOOPLINE_ADMIN_TOKEN": TOKEN})
        _wait_for_candidate(srv, "v0.3.0")
        sent = _traffic(srv, records[:100], wrong="v0.3.0")
        assert 0 < sent.get("v0.3.0", 0) < 40
        doc = _monitor_act(root, srv)
        j = doc["rollout"]
        assert j["decision"] == "abort" and j["candidate"]["records"] < 40, j
        assert j["reasons"][0].startswith("worse than the champion by more than the margin")
        acted = {a["action"]: a for a in doc["actions"]}
        assert acted["rollout"]["done"] and acted["reload"]["done"]
        aborted = acted["rollout"]["registry_tag"]
        _wait_for_candidate(srv, None)  # every worker: all traffic back to the champion
        assert srv.client.post("/model", json={}).json()["model_version"] == "v0.2.0"
    finally:
        srv.stop()
    assert _gto_stages(root) == {"prod": "v0.2.0"}
    history = [e for e in json.loads(loopline("history", "--json", cwd=root).stdout)
               if e["event"] != "register"]
    assert [(e["event"], e["stage"], e["version"]) for e in history[:6]] == [
        ("abort", "canary", "v0.3.0"), ("rollout", "canary", "v0.3.0"),
        ("complete", "canary", "v0.2.0"), ("promote", "prod", "v0.2.0"),
        ("advance", "canary", "v0.2.0"), ("rollout", "canary", "v0.2.0")]
    assert history[0]["reason"].startswith("monitor: worse than the champion")
    from gto import api

    refs = {e["ref"]: e["version"] for e in api.history(str(root), artifact="credit-risk")}
    assert refs[aborted] == "v0.3.0" and refs[completed] == "v0.2.0", refs
