"""The registry's audit timeline: registrations, promotions, rollbacks, GTO's unassignments
and deregistrations, and deleted assignments.

An assignment number that was handed out but whose tag no longer exists is a "deleted"
event. Numbers are known from marker refs (which also keep the deleted tag's object, so its
version and time are shown) and from the ``hw`` numbers recorded in later tags' messages;
gaps in the numbering mean nothing by themselves (``gto assign`` numbers tags per artifact).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopline.registry.tags import utc_iso

if TYPE_CHECKING:
    from loopline.registry.tags import Assignment, Registry, Tag, Version


def timeline(reg: Registry, stage: str | None = None) -> list[dict]:
    """The audit timeline of ``reg`` (of one stage, or all), newest first."""
    rows: list[tuple[tuple, dict]] = []
    if stage is None:
        for v in [*reg.versions.values(), *reg.retired.values()]:
            rows.append(((*v.order, 0), _version_event(reg, v)))
        for version, t in reg.deregistered.items():
            rows.append(((*t.order, 0), _row(t, "deregister", version, None, None)))
    stages = [stage] if stage else sorted({*reg.assignments, *reg.unassignments, *reg.markers})
    for st in stages:
        for a in reg.stage_assignments(st):
            rows.append(((*a.order, 1), _assignment_event(reg, a)))
        for u in reg.unassignments.get(st, []):
            rows.append(((*u.order, 1), _assignment_event(reg, u)))
        rows += _deleted_events(reg, st)
    rows.sort(key=lambda r: r[0], reverse=True)
    return [row for _, row in rows]


def _row(t: Tag, event: str, version: str | None, stage: str | None, n: int | None) -> dict:
    m = t.meta
    return {"time": utc_iso(t.time), "event": event, "version": version, "stage": stage,
            "tag": t.tag, "n": n, "commit": t.commit, "who": m.get("who"),
            "forced": bool(m.get("forced")), "reason": m.get("reason"), "gate": None,
            "seq": t.seq}


def _version_event(reg: Registry, v: Version) -> dict:
    return {**_row(v, "register", v.version, None, None), "gate": v.verdict}


def _assignment_event(reg: Registry, a: Assignment) -> dict:
    version = reg.version_of(a)
    gate = reg.versions[version].verdict if version in reg.versions else "unknown"
    return {**_row(a, a.action, version, a.stage, a.n), "gate": gate}


def _deleted_events(reg: Registry, stage: str) -> list[tuple[tuple, dict]]:
    """Numbers of ``stage`` known to have been handed out whose tag no longer exists."""
    present = {a.n for a in reg.stage_assignments(stage)}
    known: dict[int, tuple] = {}  # n to the order of the first tag that tells of it
    for t in sorted(reg.all_tags(), key=lambda t: t.order):
        n = t.hw.get(stage)
        if isinstance(n, int) and n not in present and n not in known:
            known[n] = t.order
    out = []
    marks = reg.markers.get(stage, {})
    for n in sorted(set(known) | (set(marks) - present)):
        mark = marks.get(n)
        reason = "assignment tag deleted (reverted)"
        if mark is not None:  # the marker keeps the deleted tag's object: when and what
            version = reg.version_of(mark)
            row = {**_row(mark, "deleted", version, stage, n), "reason": reason}
            out.append(((*mark.order, 1), row))
            continue
        out.append(((*known[n], 0, n), {
            "time": None, "event": "deleted", "version": None, "stage": stage,
            "tag": f"{reg.settings.artifact}#{stage}#{n}", "n": n, "commit": None, "who": None,
            "forced": False, "reason": reason, "gate": None, "seq": None}))
    return out
