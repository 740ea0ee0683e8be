"""The registry's actions: register, promote, rollback, which, history (a promotion to the
serving stage under a canary or blue_green plan starts a rollout: :mod:`loopline.registry.rollout`).

A version is the tag ``<artifact>@vX.Y.Z`` on the commit whose dvc.lock produced the model;
a stage assignment is the tag ``<artifact>#<stage>#<n>`` (see :mod:`loopline.registry.tags`).
Nothing is ever rewritten: promotions and rollbacks append tags. This module imports nothing
heavy: no gitpython, dvc, pandas, pydantic or hydra (``loopline.registry.fetch.get``, which
copies a version's files, imports ``dvc.api`` only when an object is missing from the cache).
"""

from __future__ import annotations

import os
import re
import time

from loopline.core.errors import LooplineError
from loopline.core.layout import CARD_JSON, MODEL_ONNX
from loopline.registry.checks import check_clean, check_force, check_gate, check_model
from loopline.registry.semver import SEMVER_RE, bump_version, normalize_version, semver_key
from loopline.registry.settings import load_layout, load_settings
from loopline.registry.tags import (
    Assignment,
    Registry,
    Version,
    dumps,
    header,
    locked_registry,
    open_registry,
    utc_iso,
)
from loopline.registry.write import (
    Change,
    apply,
    check_remote,
    identity,
    make_tag,
    marker_ref,
)


def _check_artifact(ref: str, artifact: str) -> None:
    """Refuse ``other@v1.2.0`` where ``artifact`` is this repository's artifact."""
    named, at, _ = ref.rpartition("@")
    if at and named != artifact:
        raise LooplineError(f"{ref!r} names artifact {named!r}, but this repository's artifact "
                            f"is {artifact!r} (artifact in params.yaml)")


MAX_WAIT_S = 2  # longer: the newest tag is dated ahead (another clock); date this one after it


def _stamp(reg: Registry) -> tuple[str, str, int, str]:
    """Who acts, git's ident, and a tagger time at least one second past the artifact's
    newest tag, so GTO, which orders by whole seconds, reads the order loopline writes.

    A tag made in the same second as the newest one waits for the next second (under a
    second), so tag times stay true and a later ``gto`` tag still sorts after it; with an
    explicit GIT_COMMITTER_DATE, or a newest tag dated ahead, the time is moved on instead.
    """
    who, ident, now, zone = identity(reg.settings.root)
    newest = reg.newest_time()
    if now <= newest and "GIT_COMMITTER_DATE" not in os.environ and newest - now < MAX_WAIT_S:
        time.sleep(max(0.0, newest + 1 - time.time()) + 0.01)
        who, ident, now, zone = identity(reg.settings.root)
    return who, ident, max(now, newest + 1), zone


def register(root: str | os.PathLike[str] | None = None, *, bump: str = "minor",
             version: str | None = None, push: str | None = None, force: bool = False,
             reason: str | None = None) -> dict:
    """Register the model of HEAD as a new version (tag ``<artifact>@vX.Y.Z``).

    Args:
        root: The repository (default: the current directory).
        bump: Which part of the latest version to bump (major, minor, patch).
        version: An explicit version instead of a bump.
        push: A remote to push the tag to (``git push --atomic``).
        force: Register a model whose gate failed (needs ``reason``; recorded).
        reason: Why the failed gate is overridden.

    Returns:
        The new version's tag, commit and metadata.

    Raises:
        LooplineError: dirty tree, model not from the committed dvc.lock, gate missing or
            failed, commit already registered, version taken, or the remote moved.
    """
    reason = check_force(force, reason)
    settings = load_settings(root)
    base = settings.root
    if version:
        _check_artifact(version, settings.artifact)
    commit = check_clean(base)
    with locked_registry(settings) as (reg, lock, repaired):
        existing = reg.versions_at(commit)
        if existing:
            raise LooplineError(f"commit {commit[:12]} already has version {existing[0].tag}")
        layout = load_layout(base)
        card, md5s = check_model(layout)
        gate = check_gate(layout, card, force)
        taken = [*reg.versions, *reg.deregistered]  # a deregistered name is never reused
        name = normalize_version(version) if version else bump_version(
            max(taken, key=semver_key) if taken else None, bump)
        semver_key(name)
        if name in reg.versions or name in reg.deregistered:
            raise LooplineError(f"version {name} of {settings.artifact} already exists "
                                f"(tag {settings.artifact}@{name})")
        tag = f"{settings.artifact}@{name}"
        if push:
            check_remote(reg, push, re.compile(rf"^{re.escape(settings.artifact)}@(?:v\S+)$"))
        who, ident, when, zone = _stamp(reg)
        meta = {**header(reg.next_seq(), "register"), "artifact": settings.artifact,
                "version": name, "commit": commit, "who": who, "when": utc_iso(when),
                "forced": force, "reason": reason,
                "gate": {k: gate.get(k) for k in ("verdict", "checks", "champion", "candidate")},
                "metrics": card.get("metrics", {}),
                "model": {"onnx_sha256": (card.get("model_files") or {}).get("onnx_sha256"),
                          "onnx_md5": md5s[MODEL_ONNX], "card_md5": md5s[CARD_JSON]},
                "data": {"raw_md5": (card.get("data") or {}).get("raw_md5")},
                "params_hash": card.get("params_hash"), "hw": reg.high_water()}
        obj = make_tag(base, tag, commit, dumps(meta), ident, when, zone)
        apply(base, Change({f"refs/tags/{tag}": obj}, {}, "register"), push, lock)
    return {"artifact": settings.artifact, "version": name, "tag": tag, "commit": commit,
            "pushed": push, "metadata": meta, "repaired": repaired}


# ------------------------------------------------------- promote and rollback


def _assign(reg: Registry, v: Version, stage: str, action: str, *, forced: bool,
            reason: str | None, push: str | None, lock: int, extra: dict | None = None) -> dict:
    """Append the assignment tag ``<artifact>#<stage>#<n>`` for version ``v``."""
    settings = reg.settings
    remote_ns: tuple[int, ...] = ()
    if push:
        relevant = re.compile(rf"^{re.escape(settings.artifact)}#{re.escape(stage)}#(\d+)$"
                              rf"|^{re.escape(v.tag)}$()")
        remote_ns = check_remote(reg, push, relevant, stage)
    hw = reg.high_water({stage: remote_ns})
    n = hw.get(stage, 0) + 1
    hw[stage] = n
    tag = f"{settings.artifact}#{stage}#{n}"
    who, ident, when, zone = _stamp(reg)
    meta = {**header(reg.next_seq(), action), "action": action, "artifact": settings.artifact,
            "version": v.version, "stage": stage, "forced": forced, "reason": reason,
            "who": who, "when": utc_iso(when), **(extra or {}), "hw": hw}
    obj = make_tag(settings.root, tag, v.commit, dumps(meta), ident, when, zone)
    change = Change({f"refs/tags/{tag}": obj, marker_ref(settings.artifact, stage, n): obj},
                    {f"refs/tags/{v.tag}": v.object}, action)
    apply(settings.root, change, push, lock)
    return {"artifact": settings.artifact, "stage": stage, "version": v.version, "tag": tag, "n": n,
            "commit": v.commit, "action": action, "forced": forced, "reason": reason,
            "who": who, "pushed": push, "created": True, **(extra or {})}


def _gate_override(v: Version, force: bool, what: str) -> None:
    if not v.gate_passed and not force:
        raise LooplineError(f"{v.tag} did not pass its gate (verdict {v.verdict}): refusing to "
                            f"{what}; use --force --reason \"...\" to override (recorded)")


def _unchanged(reg: Registry, cur: Assignment, action: str) -> dict:
    return {"artifact": reg.settings.artifact, "stage": cur.stage, "version": cur.version,
            "tag": cur.tag, "n": cur.n, "commit": cur.commit, "action": action,
            "forced": False, "reason": None, "who": None, "pushed": None, "created": False}


def promote(version: str, stage: str, *, root: str | os.PathLike[str] | None = None,
            force: bool = False, reason: str | None = None, push: str | None = None,
            strategy: str | None = None) -> dict:
    """Assign ``version`` (or ``HEAD``: the version of the checked-out commit) to ``stage``
    (a new tag ``<artifact>#<stage>#<n>``).

    A version whose gate did not pass needs ``force`` and ``reason``, both recorded in the
    tag. Promoting the stage's current version again creates nothing. To the serving stage,
    under a canary or blue_green ``deploy.strategy`` (or ``strategy``), with a version
    already there, it records a rollout instead (:mod:`loopline.registry.rollout`; the
    result's ``action`` is ``rollout``); ``strategy="cutover"`` assigns at once.

    Raises:
        LooplineError: unknown version or stage, failed gate, or the remote moved.
    """
    reason = check_force(force, reason)
    settings = load_settings(root)
    _check_artifact(version, settings.artifact)
    with locked_registry(settings, stage) as (reg, lock, repaired):
        v = reg.version(version)
        cur = reg.current(stage)
        if cur is not None and cur.version == v.version:
            return {**_unchanged(reg, cur, "promote"), "repaired": repaired}
        _gate_override(v, force, f"promote it to {stage}")
        staged = _rollout(reg, v, stage, cur, strategy, reason=reason, push=push, lock=lock)
        if staged is not None:
            return {**staged, "repaired": repaired}
        res = _assign(reg, v, stage, "promote", forced=force and not v.gate_passed,
                      reason=reason, push=push, lock=lock,
                      extra={"previous": cur.version if cur else None})
    return {**res, "repaired": repaired}


def _rollout(reg: Registry, v: Version, stage: str, cur: Assignment | None,
             strategy: str | None, *, reason: str | None, push: str | None,
             lock: int) -> dict | None:
    """The promotion as a rollout (started, or completed at once by a cutover of its
    candidate), or None for an ordinary assignment."""
    from loopline.registry import rollout
    from loopline.registry.tags import CANARY

    if stage == CANARY:
        raise LooplineError(f"{CANARY} is the stage of rollouts: promote to "
                            f"{rollout.serving_stage(reg)} under a canary or blue_green "
                            "deploy.strategy")
    if strategy not in (None, "cutover", "canary", "blue_green"):
        raise LooplineError(f"unknown strategy {strategy!r}: cutover, canary or blue_green",
                            exit_code=2)
    if stage != rollout.serving_stage(reg):
        return None
    under_way = rollout.active(reg)
    strategy = strategy or rollout.declared_strategy(reg.settings.root)
    if strategy == "cutover":
        if under_way is None:
            return None
        if under_way["version"] != v.version:
            raise LooplineError(f"a rollout of {under_way['version']} to {stage} is under way "
                                f"({under_way['tag']}): `loopline rollout abort` it first")
        tag = rollout.complete_now(reg, v, under_way, reason=reason, push=push, lock=lock)
        return {"artifact": reg.settings.artifact, "stage": stage, "version": v.version,
                "tag": tag["tag"], "n": tag["n"], "commit": v.commit, "action": "promote",
                "forced": False, "reason": reason, "who": tag["metadata"]["who"],
                "pushed": push, "created": True, "previous": cur.version if cur else None,
                "rollout": under_way["tag"]}
    plan = rollout.read_plan(reg.settings.root).model_copy(update={"strategy": strategy})
    if cur is None:
        return None  # nothing to measure a candidate against: the first version cuts over
    return rollout.start(reg, v, stage, plan, cur.version or "", reason=reason, push=push,
                         lock=lock)


def rollback_target(reg: Registry, stage: str, cur: Assignment) -> Version:
    """The highest version below the current one (by semver) whose gate passed."""
    cur_key = semver_key(cur.version) if cur.version and SEMVER_RE.match(cur.version) else None
    for v in reversed(reg.sorted_versions()):
        if cur_key is not None and semver_key(v.version) >= cur_key:
            continue
        if v.gate_passed:
            return v
    raise LooplineError(f"nothing to roll back to: no version of {reg.settings.artifact} earlier "
                        f"than {cur.version} in {stage} passed its gate")


def rollback(stage: str, *, to: str | None = None, root: str | os.PathLike[str] | None = None,
             force: bool = False, reason: str | None = None, push: str | None = None) -> dict:
    """Roll ``stage`` back with a new assignment (the history is append-only).

    Without ``to``: the last version earlier than the current one (by semver) that passed
    its gate; failed and forced ones are skipped. With ``to``: that version, which must
    have passed its gate unless ``force`` and ``reason``.

    Raises:
        LooplineError: unknown stage or version, nothing assigned or nothing to roll back to.
    """
    reason = check_force(force, reason)
    settings = load_settings(root)
    if to is not None:
        _check_artifact(to, settings.artifact)
    with locked_registry(settings, stage) as (reg, lock, repaired):
        cur = reg.current(stage)
        if cur is None:
            raise LooplineError(f"nothing to roll back: no version assigned to {stage}")
        if to is None:
            if force:
                raise LooplineError("--force applies only with --to VERSION", exit_code=2)
            target = rollback_target(reg, stage, cur)
        else:
            target = reg.version(to)
            if target.version == cur.version:
                raise LooplineError(f"{target.tag} is already current in {stage} ({cur.tag})")
            _gate_override(target, force, f"roll {stage} back to it")
        res = _assign(reg, target, stage, "rollback", forced=force and not target.gate_passed,
                      reason=reason, push=push, lock=lock, extra={"previous": cur.version})
    return {**res, "repaired": repaired}


# ------------------------------------------------------------- which, history


def which(stage: str, root: str | os.PathLike[str] | None = None) -> dict:
    """The current version of ``stage`` with its assignment and metadata.

    Raises:
        LooplineError: unknown stage, or "no version assigned to STAGE".
    """
    reg = open_registry(root)
    reg.check_stage(stage)
    cur = reg.current(stage)
    if cur is None:
        raise LooplineError(f"no version assigned to {stage}")
    v = reg.versions.get(cur.version or "")
    return {"artifact": reg.settings.artifact, "stage": stage, "version": cur.version,
            "tag": cur.tag, "n": cur.n, "commit": cur.commit, "version_tag": v.tag if v else None,
            "action": cur.action, "forced": cur.forced, "reason": cur.reason,
            "assigned_at": utc_iso(cur.time), "assigned_by": cur.who,
            "metadata": v.meta if v else {}}


def history(root: str | os.PathLike[str] | None = None, stage: str | None = None) -> list[dict]:
    """The audit timeline, newest first (see :meth:`Registry.events`)."""
    reg = open_registry(root)
    if stage is not None:
        reg.check_stage(stage)
    return reg.events(stage)

