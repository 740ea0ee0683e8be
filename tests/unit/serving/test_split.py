"""The traffic split of a rollout (serving/split.py) and its hot reload (serving/reload.py)."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from loopline.core.errors import LooplineError
from loopline.serving import bundle as bundles
from loopline.serving.split import KEY_HEADER, Split, make, state, with_rollout

LOADS: list[str] = []


def _version(entry: dict) -> bundles.ServedVersion:
    """A version without a session (what the split routes to), counting loads."""
    LOADS.append(entry["version"])
    inputs = {"Zip": {}} if entry["version"] == "v-other" else {"Age": {"kind": "numeric"}}
    return bundles.ServedVersion(version=entry["version"],
                                 model=SimpleNamespace(sha256=entry["sha256"]),
                                 classes=["bad", "good"], inputs=inputs, positive_class="good")


def _rids(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(128):032x}" for _ in range(n)]


def _within_binomial(hits: int, n: int, share: float) -> bool:
    p = share / 100.0
    return abs(hits - n * p) <= 4.5 * math.sqrt(n * p * (1 - p))


CHAMP = _version({"version": "v1", "sha256": "a"})
CAND = _version({"version": "v2", "sha256": "b"})


@pytest.mark.parametrize("share", [1.0, 5.0, 25.0, 50.0])
def test_the_candidate_gets_its_share_per_request_and_per_key(share: float) -> None:
    split = Split(CHAMP, CAND, share, "credit-risk#canary#1")
    n = 20_000
    by_rid = sum(split.pick(None, rid) is CAND for rid in _rids(n))
    by_key = sum(split.pick(f"customer-{i}", rid) is CAND for i, rid in enumerate(_rids(n, 8)))
    assert _within_binomial(by_rid, n, share), (by_rid, n, share)
    assert _within_binomial(by_key, n, share), (by_key, n, share)


@pytest.mark.parametrize("share", [5.0, 50.0])
def test_the_services_request_ids_split_uniformly_though_they_start_with_the_time(share: float) -> None:
    from loopline.serving.log_writer import request_id

    split = Split(CHAMP, CAND, share)
    n = 20_000
    rids = [request_id() for _ in range(n)]  # a few milliseconds: one shared time prefix
    assert len({rid[:10] for rid in rids}) < n / 100
    assert _within_binomial(sum(split.pick(None, rid) is CAND for rid in rids), n, share)


def test_a_key_sticks_to_one_version_and_stays_on_the_candidate_as_the_share_grows() -> None:
    steps = [Split(CHAMP, CAND, s) for s in (5.0, 25.0, 50.0)]
    keys = [f"k{i}" for i in range(2000)]
    rids = _rids(40)
    for split in steps:
        for key in keys[:200]:
            assert len({split.pick(key, rid).version for rid in rids}) == 1
    on = [{k for k in keys if split.pick(k, "0" * 32) is CAND} for split in steps]
    assert on[0] < on[1] < on[2]  # monotone: nobody who met the candidate goes back
    # another candidate reshuffles the callers
    other = _version({"version": "v3", "sha256": "c"})
    assert {k for k in keys if Split(CHAMP, other, 25.0).pick(k, "0" * 32) is other} != on[1]


def test_no_candidate_means_the_champion_and_full_share_means_the_candidate() -> None:
    rids = _rids(500)
    assert all(Split(CHAMP).pick("k", rid) is CHAMP for rid in rids)
    assert all(Split(CHAMP, CAND, 100.0).pick(None, rid) is CAND for rid in rids)
    assert Split(CHAMP, CAND, 0.0).route(None, {KEY_HEADER: "x"}, rids[0]) is CHAMP
    split = Split(CHAMP, CAND, 50.0, "t")
    by_header = {split.route(None, {KEY_HEADER: "same"}, rid).version for rid in rids}
    assert len(by_header) == 1 and split.route("same", {}, rids[0]).version in by_header
    assert split.describe() == {"candidate_version": "v2", "share": 50.0, "rollout": "t"}
    assert Split(CHAMP).describe()["candidate_version"] is None


def test_make_loads_the_candidate_once_and_refuses_another_contract() -> None:
    LOADS.clear()
    rollout = {"version": "v2", "sha256": "b", "share": 1.0, "tag": "t1"}
    first = make(CHAMP, rollout, _version, None)
    second = make(CHAMP, {**rollout, "share": 25.0}, _version, first)
    assert LOADS == ["v2"] and second.candidate is first.candidate and second.share == 25.0
    assert make(CHAMP, None, _version, second).candidate is None
    with pytest.raises(LooplineError, match="rollout candidate v-other takes different inputs"):
        make(CHAMP, {"version": "v-other", "sha256": "z", "share": 5.0}, _version, None)
    entry = {"version": "v1", "sha256": "a", "rollout": rollout}
    assert state(entry) == ("v1", "a", "v2", "b", 1.0)


def test_a_reload_changes_the_share_in_every_worker(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from loopline.serving import spec as spec_module
    from loopline.serving import split as split_module
    from loopline.serving.reload import Reloader

    plan = {"share": 1.0}

    def rolled(root, entry, ref, **kw):  # noqa: ANN001, ANN202
        if plan["share"] is None:
            return entry
        return {**entry, "rollout": {"version": "v2", "sha256": "b", "share": plan["share"],
                                     "tag": "t"}}

    monkeypatch.setenv("TOKEN", "s3cret")
    monkeypatch.setattr(spec_module, "resolve_model",
                        lambda root, ref, **kw: {"version": "v1", "sha256": "a"})
    monkeypatch.setattr(split_module, "with_rollout", rolled)
    spec = {"root": str(tmp_path), "ref": None, "model": {"version": "v1", "sha256": "a"},
            "control": str(tmp_path / "active.json"), "reload_poll": 0.02,
            "admin_token_env": "TOKEN"}
    LOADS.clear()
    one, other = (Reloader(spec, _version, lambda _: None) for _ in range(2))
    other.start()
    try:
        for share in (1.0, 25.0, None):
            plan["share"] = share
            status, body = one.handle("Bearer s3cret", None)
            assert status == 200 and body["changed"] and body["model_version"] == "v1"
            assert body["share"] == (share or 0.0)
            deadline = time.monotonic() + 10
            while other.split.share != one.split.share and time.monotonic() < deadline:
                time.sleep(0.02)
            assert other.split.describe() == one.split.describe()
        assert other.split.candidate is None and one.served.version == "v1"
        assert LOADS.count("v2") == 2  # each worker loaded the candidate once, for two shares
        # a worker started now begins with what the others serve
        assert Reloader(spec, _version, lambda _: None).split.candidate is None
    finally:
        other.stop()


def test_the_service_follows_the_rollout_of_the_serving_stage_only(repo) -> None:  # noqa: ANN001
    from loopline.registry import actions as registry
    from loopline.serving.spec import resolve_model

    repo.register("a")
    registry.promote("v0.1.0", "prod", root=repo.path)
    repo.register("b")
    registry.promote("v0.2.0", "prod", root=repo.path, strategy="canary")
    kw = {"models": "models", "default_stage": "prod"}
    entry = with_rollout(repo.path, resolve_model(repo.path, None, **kw), None, **kw)
    assert entry["version"] == "v0.1.0"
    r = entry["rollout"]
    assert (r["version"], r["share"], r["tag"], r["step"]) == ("v0.2.0", 1.0,
                                                              "credit-risk#canary#1", 1)
    assert Path(r["bundle"], "model.onnx").read_bytes() == repo.files[
        registry.which("canary", repo.path)["commit"]]["model.onnx"]
    pinned = with_rollout(repo.path, resolve_model(repo.path, "v0.1.0", **kw), "v0.1.0", **kw)
    assert "rollout" not in pinned
