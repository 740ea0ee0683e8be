"""Rollouts declared in Git: a promotion reached in steps of live traffic.

A rollout is a run of assignment tags of the stage ``canary`` (``<artifact>#canary#<n>``,
so ``gto show`` reads the candidate in ``canary``), each on the candidate's commit, each
message carrying the plan (``deploy`` in params.yaml: strategy, steps, minimum records and
labels, criteria), the step it stands at and the share of traffic that step routes to the
candidate, the stage it is for and the version it is measured against (the champion):

- start (``promote vX --to prod`` under a canary or blue_green strategy): step 1;
- advance: a new canary tag with the next step;
- complete (advancing past the last step): an ordinary assignment of the candidate to the
  stage plus GTO's unassignment ``<artifact>#canary!#<n>``, in one transaction;
- abort: the unassignment alone, with the reason: all traffic goes back to the champion.

Every tag is written by the registry's transaction (:mod:`loopline.registry.write`); the
service reads the active rollout when it starts or reloads (:mod:`loopline.serving.split`).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from loopline.core.errors import LooplineError
from loopline.registry.settings import load_settings, read_keys
from loopline.registry.tags import (
    CANARY,
    Assignment,
    Registry,
    Version,
    dumps,
    header,
    locked_registry,
    utc_iso,
)
from loopline.registry.write import (
    Change,
    apply,
    check_remote,
    make_tag,
    marker_ref,
)

if TYPE_CHECKING:
    from loopline.config.deploy import DeployConfig


def read_plan(root: os.PathLike[str] | str) -> DeployConfig:
    """The ``deploy`` section of params.yaml (cutover when absent)."""
    from pathlib import Path

    from loopline.config.deploy import load_deploy

    return load_deploy(read_keys(Path(root), ("deploy",)).get("deploy"))


def declared_strategy(root: os.PathLike[str] | str) -> str:
    """``deploy.strategy`` of params.yaml without validating the plan (no pydantic: a
    cutover, the default, stays as light as it always was); an unknown one is checked by
    :func:`read_plan`."""
    from pathlib import Path

    raw = read_keys(Path(root), ("deploy",)).get("deploy")
    name = raw.get("strategy", "cutover") if isinstance(raw, dict) else "cutover"
    if raw is not None and (not isinstance(raw, dict) or name not in ("cutover", "canary",
                                                                      "blue_green")):
        return read_plan(root).strategy  # raises, naming the key
    return name


def serving_stage(reg: Registry) -> str:
    """The stage a service follows: prod, else the last stage (as ``registry.serving_stage``)."""
    stages = reg.settings.stages
    return "prod" if "prod" in stages else stages[-1]


def active(reg: Registry) -> dict[str, Any] | None:
    """The rollout under way (its current canary assignment, read), or None."""
    cur = reg.current(CANARY)
    if cur is None:
        return None
    return describe(reg, cur)


def describe(reg: Registry, cur: Assignment) -> dict[str, Any]:
    """A canary assignment as a rollout: candidate, champion, plan, step and share."""
    m = cur.meta
    plan = m.get("plan") if isinstance(m.get("plan"), dict) else {}
    steps = [float(s) for s in plan.get("steps") or []]
    step = m.get("step") if isinstance(m.get("step"), int) else None
    share = steps[step - 1] if step and 0 < step <= len(steps) else None
    return {"artifact": reg.settings.artifact, "version": reg.version_of(cur),
            "champion": m.get("champion"), "stage": m.get("target") or serving_stage(reg),
            "strategy": plan.get("strategy", "canary"), "step": step, "steps": steps,
            "share": share, "tag": cur.tag, "n": cur.n, "commit": cur.commit,
            "started": m.get("started") or utc_iso(cur.time), "updated": utc_iso(cur.time),
            "who": cur.who, "plan": plan}


def _stamp(reg: Registry) -> tuple[str, str, int, str]:
    from loopline.registry.actions import _stamp as stamp

    return stamp(reg)


def _relevant(reg: Registry, *stages: str) -> re.Pattern:
    a = re.escape(reg.settings.artifact)
    alts = "|".join(re.escape(s) for s in stages)
    return re.compile(rf"^{a}#(?:{alts})!?#(\d+)$")


def _write(reg: Registry, v: Version, tags: list[tuple[str, bool, dict]], push: str | None,
           lock: int, action: str) -> list[dict]:
    """Write ``tags`` (stage, unassignment?, metadata) on ``v``'s commit in one transaction."""
    settings = reg.settings
    remote: dict[str, tuple[int, ...]] = {}
    if push:
        for stage in {s for s, _, _ in tags}:
            remote[stage] = check_remote(reg, push, _relevant(reg, stage), stage)
    hw = reg.high_water(remote)
    who, ident, when, zone = _stamp(reg)
    seq = reg.next_seq()
    create: dict[str, str] = {}
    out = []
    for stage, removed, extra in tags:
        n = hw.get(stage, 0) + 1
        hw[stage] = n
        name = f"{settings.artifact}#{stage}{'!' if removed else ''}#{n}"
        meta = {**header(seq, extra["action"]), "artifact": settings.artifact,
                "version": v.version, "stage": stage, "forced": False,
                "who": who, "when": utc_iso(when), **extra, "hw": dict(hw)}
        seq += 1
        obj = make_tag(settings.root, name, v.commit, dumps(meta), ident, when, zone)
        create[f"refs/tags/{name}"] = obj
        if not removed:  # a marker names an assignment; an unassignment's number is in hw
            create[marker_ref(settings.artifact, stage, n)] = obj
        out.append({"tag": name, "n": n, "stage": stage, "metadata": meta})
    apply(settings.root, Change(create, {f"refs/tags/{v.tag}": v.object}, action), push, lock)
    return out


def start(reg: Registry, v: Version, stage: str, plan: DeployConfig, champion: str, *,
          reason: str | None, push: str | None, lock: int) -> dict:
    """Record a rollout of ``v`` to ``stage`` at step 1 (called by ``promote``)."""
    cur = active(reg)
    if cur is not None:
        if cur["version"] == v.version:
            return {**cur, "created": False, "action": "rollout"}
        raise LooplineError(f"a rollout of {cur['version']} to {cur['stage']} is under way "
                            f"({cur['tag']}): `loopline rollout abort` it or complete it first")
    who, _, when, _ = _stamp(reg)
    extra = {"action": "rollout", "reason": reason, "target": stage, "champion": champion,
             "plan": plan.plan(), "step": 1, "share": plan.steps[0], "started": utc_iso(when)}
    [tag] = _write(reg, v, [(CANARY, False, extra)], push, lock, "rollout")
    return {**describe(reg, _reloaded(reg, tag["tag"])), "created": True, "action": "rollout",
            "pushed": push}


def _reloaded(reg: Registry, tag: str) -> Assignment:
    fresh = Registry.load(reg.settings)
    return next(a for a in fresh.stage_assignments(CANARY) if a.tag == tag)


def _under_way(reg: Registry) -> tuple[dict, Version]:
    cur = active(reg)
    if cur is None:
        raise LooplineError(f"no rollout of {reg.settings.artifact} is under way "
                            f"(nothing assigned to {CANARY})")
    v = reg.versions.get(cur["version"] or "")
    if v is None:
        raise LooplineError(f"{cur['tag']} names {cur['version']}, which is not a registered "
                            f"version of {reg.settings.artifact}")
    if not cur["steps"] or cur["step"] is None:
        raise LooplineError(f"{cur['tag']} records no rollout plan (not written by loopline "
                            f"promote): `loopline rollout abort` it")
    return cur, v


def status(root: str | os.PathLike[str] | None = None) -> dict | None:
    """The rollout under way, or None."""
    from loopline.registry.tags import open_registry

    return active(open_registry(root))


def _expected(cur: dict | None, expect: str | None) -> None:
    """With ``expect`` (the canary tag a decision was made on): refuse when the rollout
    has moved since, under the registry lock, so two judges cannot both move one step."""
    if expect is not None and (cur is None or cur["tag"] != expect):
        raise LooplineError(f"the rollout moved since it was judged on {expect} (now "
                            f"{cur['tag'] if cur else 'none under way'}): nothing done")


def advance(root: str | os.PathLike[str] | None = None, *, reason: str | None = None,
            push: str | None = None, expect: str | None = None) -> dict:
    """Move the rollout to its next step, or complete it past the last one (``expect``:
    only if its current canary tag is still that one)."""
    settings = load_settings(root)
    with locked_registry(settings) as (reg, lock, _):
        _expected(active(reg), expect)
        cur, v = _under_way(reg)
        base = {"reason": reason, "target": cur["stage"], "champion": cur["champion"],
                "plan": cur["plan"], "started": cur["started"]}
        if cur["step"] < len(cur["steps"]):
            step = cur["step"] + 1
            extra = {"action": "advance", **base, "step": step, "share": cur["steps"][step - 1]}
            [tag] = _write(reg, v, [(CANARY, False, extra)], push, lock, "advance")
            return {**describe(reg, _reloaded(reg, tag["tag"])), "action": "advance",
                    "previous_share": cur["share"], "pushed": push}
        stage = cur["stage"]
        prev = reg.current(stage)
        done = [(stage, False, {"action": "promote", "reason": reason, "rollout": cur["tag"],
                                "strategy": cur["strategy"],
                                "previous": prev.version if prev else None}),
                (CANARY, True, {"action": "complete", "reason": reason, "target": stage})]
        tags = _write(reg, v, done, push, lock, "promotion")
    return {**cur, "action": "complete", "tag": tags[0]["tag"], "canary_tag": tags[1]["tag"],
            "share": 100.0, "previous_share": cur["share"], "pushed": push}


def abort(root: str | os.PathLike[str] | None = None, *, reason: str,
          push: str | None = None, expect: str | None = None) -> dict:
    """End the rollout: the candidate leaves ``canary`` (GTO's unassignment, with the reason);
    all traffic goes back to the champion (``expect``: only if its current canary tag is
    still that one)."""
    if not reason or not reason.strip():
        raise LooplineError("abort needs --reason \"...\" (recorded in the registry)", exit_code=2)
    settings = load_settings(root)
    with locked_registry(settings) as (reg, lock, _):
        cur = active(reg)
        _expected(cur, expect)
        if cur is None:
            raise LooplineError(f"no rollout of {settings.artifact} is under way "
                                f"(nothing assigned to {CANARY})")
        v = reg.versions.get(cur["version"] or "") or reg.retired.get(cur["version"] or "")
        if v is None:
            raise LooplineError(f"{cur['tag']} names {cur['version']}, which has no version tag")
        [tag] = _write(reg, v, [(CANARY, True, {"action": "abort", "reason": reason.strip(),
                                                "target": cur["stage"], "step": cur["step"]})],
                       push, lock, "abort")
    return {**cur, "action": "abort", "canary_tag": tag["tag"], "reason": reason.strip(),
            "previous_share": cur["share"], "share": 0.0, "pushed": push}


def complete_now(reg: Registry, v: Version, cur: dict, *, reason: str | None,
                 push: str | None, lock: int) -> dict:
    """``promote --now`` of the rollout's candidate: complete it at once."""
    stage = cur["stage"]
    prev = reg.current(stage)
    done = [(stage, False, {"action": "promote", "reason": reason, "rollout": cur["tag"],
                            "strategy": "cutover", "previous": prev.version if prev else None}),
            (CANARY, True, {"action": "complete", "reason": reason, "target": stage})]
    tags = _write(reg, v, done, push, lock, "promotion")
    return tags[0]
