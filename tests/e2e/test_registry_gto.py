"""GTO and loopline read one registry the same way, whoever wrote its tags.

Seeded random sequences of register / promote / rollback / assignment-tag deletion done by
loopline and `gto assign` / `gto deprecate` (unassign) / `gto deregister` done by GTO; after
every step `loopline which` must name what `gto show` names in every stage, and `loopline
history` must list the tags `gto history` lists, in the same order. The clock often stands
still between loopline's steps (same-second promotions); GTO orders by the one-second tagger
time, so each GTO step is given a second after the newest tag (GTO's own ties are GTO's).
"""

from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from loopline.core.errors import LooplineError
from loopline.registry import actions as registry
from loopline.registry.tags import open_registry
from tests.helpers.registry_repo import ART, Repo, git

gto_api = pytest.importorskip("gto.api")

SEQUENCES = 12
STEPS = 14
STAGES = ("staging", "prod")
LOOPLINE_OPS = ("register", "promote", "promote", "rollback", "delete")
GTO_OPS = ("gto_assign", "gto_assign", "gto_unassign", "gto_deregister")


class Clock:
    """The time every tag is written at: loopline via GIT_COMMITTER_DATE, GTO (dulwich
    reads time.time()) via a patched time.time."""

    def __init__(self, rng: random.Random) -> None:
        self.now = 1_700_000_000
        self.rng = rng

    def tick(self) -> None:
        self.now += self.rng.choice((0, 0, 0, 1, 2))  # mostly the same second
        os.environ["GIT_COMMITTER_DATE"] = f"{self.now} +0000"

    @contextmanager
    def for_gto(self, root: Path):
        newest = max([0, *(int(t) for t in git(root, "for-each-ref", "--format=%(taggerdate:unix)",
                                                  f"refs/tags/{ART}*").split() if t)])
        at = max(self.now, newest + 1)
        real = time.time
        time.time = lambda: at + 0.5
        try:
            yield
        finally:
            time.time = real


def gto_stages(root: Path) -> dict[str, str | None]:
    shown = gto_api.show(str(root)).get(ART) or {}
    stages = shown.get("stage") or {}
    return {s: stages.get(s) for s in STAGES}


def loopline_stages(root: Path) -> dict[str, str | None]:
    out = {}
    for s in STAGES:
        try:
            out[s] = registry.which(s, root=root)["version"]
        except LooplineError:
            out[s] = None
    return out


def gto_history(root: Path) -> list[tuple[str, str | None]]:
    events = gto_api.history(str(root), artifact=ART)
    return [(e["ref"], e["version"]) for e in events if e["event"] != "commit"]


def loopline_history(root: Path) -> list[tuple[str, str | None]]:
    return [(e["tag"], e["version"]) for e in registry.history(root) if e["event"] != "deleted"]


class _Refused(Exception):
    pass


@contextmanager
def gto_refuses():
    """GTO refusing a step (e.g. "already in stage") makes it a step that does not apply."""
    from gto.exceptions import GTOException

    try:
        yield
    except GTOException as err:
        raise _Refused(str(err)) from None


def step(repo: Repo, op: str, rng: random.Random, clock: Clock, label: str) -> bool:
    """Do ``op``; False when it does not apply to the current state."""
    reg = open_registry(repo.path)
    active = sorted(reg.versions)
    stage = rng.choice(STAGES)
    if op == "register":
        repo.model(label)
        registry.register(repo.path)
        return True
    if not active:
        return False
    if op == "promote":
        registry.promote(rng.choice(active), stage, root=repo.path)
        return True
    if op == "rollback":
        try:
            registry.rollback(stage, root=repo.path)
        except LooplineError:  # nothing assigned, or nothing earlier to roll back to
            return False
        return True
    if op == "delete":  # the newest assignment (a revert), or any other one
        tags = reg.stage_assignments(stage)
        if not tags:
            return False
        cur = reg.current(stage)
        victim = cur if cur is not None and rng.random() < 0.6 else rng.choice(tags)
        git(repo.path, "tag", "-d", victim.tag)
        return True
    with clock.for_gto(repo.path), gto_refuses():
        if op == "gto_assign":
            gto_api.assign(str(repo.path), ART, stage, version=rng.choice(active))
        elif op == "gto_unassign":
            current = registry.which(stage, root=repo.path)["version"] if reg.current(stage) \
                else None
            if current is None:
                return False
            gto_api.unassign(str(repo.path), ART, version=current, stage=stage)
        elif op == "gto_deregister":
            if len(active) < 2:
                return False
            gto_api.deregister(str(repo.path), ART, version=rng.choice(active))
    return True


@pytest.mark.parametrize("seed", range(SEQUENCES))
def test_gto_and_loopline_agree_on_every_sequence(seed: int, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "gto agreement")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "gto@loopline.invalid")
    monkeypatch.delenv("GITHUB_ACTOR", raising=False)
    rng = random.Random(seed)
    clock = Clock(rng)
    monkeypatch.setenv("GIT_COMMITTER_DATE", f"{clock.now} +0000")
    repo = Repo(tmp_path / "repo")
    done = []
    for i in range(STEPS):
        clock.tick()
        op = "register" if i < 2 else rng.choice(LOOPLINE_OPS + GTO_OPS)
        try:
            if not step(repo, op, rng, clock, f"s{seed}-{i}"):
                continue
        except _Refused:
            continue
        done.append(op)
        assert loopline_stages(repo.path) == gto_stages(repo.path), (seed, done)
        assert loopline_history(repo.path) == gto_history(repo.path), (seed, done)
    print(f"\nseed {seed}: {len(done)} steps checked against gto show/history: {done}")
    assert len(done) >= STEPS // 2
