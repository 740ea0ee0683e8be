"""The registry's tags: versions and stage assignments of one artifact, read in one git call.

The layout is GTO's, so ``gto show`` and ``gto history`` read the same repository:

- a version is an annotated tag ``<artifact>@vX.Y.Z`` on the commit whose ``dvc.lock``
  produced the model; its message is one line of JSON (metrics, gate verdict and checks,
  model sha256, data and params hashes, who, when, and a registry-wide sequence number);
- a stage assignment is an annotated tag ``<artifact>#<stage>#<n>`` (n = 1, 2, 3 … per
  artifact and stage) on the same commit; its message is JSON too (action promote or
  rollback, version, stage, forced, reason, who, when, sequence number).

GTO's own tags are read too: ``<artifact>#<stage>!#<n>`` (``gto deprecate``: the version
leaves the stage) and ``<artifact>@<version>!#<n>`` (``gto deregister``: the version is gone).
The current model of a stage is the version of its newest assignment tag that still exists,
whose version is still registered and was not unassigned from the stage after it. Deleting
that tag (locally, or ``git push --delete origin TAG``) reverts the stage to the previous
assignment. Events are ordered by (tagger time, number, sequence number); loopline writes
every tag at least one second after the artifact's newest tag, so GTO, which orders by the
one-second tagger time alone, reads the same order.

Assignment numbers are never reused: every number handed out is also kept as a marker ref
``refs/loopline/assigned/<artifact>/<stage>/<n>`` (pushed with the tag, left in place when
the tag is deleted), and every tag loopline writes records in its message the highest
number of each stage it knew of (``hw``), so a clone that sees any later tag knows it too.

Everything is read with one ``git for-each-ref`` call and messages are parsed lazily, so
``which``, ``promote`` and ``rollback`` stay fast with thousands of tags.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC

from loopline.core.errors import LooplineError
from loopline.core.git import git
from loopline.core.layout import PARAMS_FILE, REGISTRY_MARKERS
from loopline.registry.semver import SEMVER_RE, normalize_version, semver_key
from loopline.registry.settings import RegistrySettings, load_settings

MESSAGE_SCHEMA = 1
# The stage of a rollout's candidate (loopline.registry.rollout); valid beside registry.stages.
CANARY = "canary"
# A message loopline writes starts {"loopline": SCHEMA, "seq": N, ...} (see header()), so the
# sequence number of thousands of tags is read without parsing their JSON.
_SEQ_RE = re.compile(r'^\{"loopline": \d+, "seq": (\d+)')
_FIELDS = ("%(refname)", "%(objecttype)", "%(objectname)", "%(*objectname)",
           "%(taggerdate:unix)", "%(contents)")
_FORMAT = "%00".join(_FIELDS) + "%1e"


def utc_iso(ts: int) -> str:
    """A unix time as UTC ISO 8601 (``2024-05-01T12:00:00Z``)."""
    from datetime import datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def header(seq: int, event: str) -> dict:
    """The first keys of every message loopline writes (read back by ``_SEQ_RE``)."""
    return {"loopline": MESSAGE_SCHEMA, "seq": seq, "event": event}


def dumps(meta: dict) -> str:
    """A tag message: the metadata as one line of ASCII JSON (key order kept)."""
    return json.dumps(meta, ensure_ascii=True, allow_nan=False, default=str)


def _message_json(message: str) -> dict:
    text = message.strip()
    if not text.startswith("{"):
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


@dataclass
class Tag:
    """Fields common to version and assignment tags (message JSON parsed on first use)."""

    tag: str
    object: str
    commit: str
    time: int
    message: str
    _meta: dict | None = field(default=None, repr=False)
    n: int = 0  # the tag's number (assignments; GTO's counter on its other tags)

    @property
    def meta(self) -> dict:
        """The message's JSON metadata ({} for tags not written by loopline)."""
        if self._meta is None:
            self._meta = _message_json(self.message)
        return self._meta

    @property
    def seq(self) -> int:
        """The registry-wide sequence number (0 for tags not written by loopline)."""
        m = _SEQ_RE.match(self.message)
        if m:
            return int(m.group(1))
        seq = self.meta.get("seq")
        return seq if isinstance(seq, int) else 0

    @property
    def order(self) -> tuple[int, int, int]:
        """Event order: tagger time, then number and sequence number (tags of one second)."""
        return self.time, self.n, self.seq

    @property
    def hw(self) -> dict[str, int]:
        """The highest assignment number of each stage when this tag was written."""
        hw = self.meta.get("hw")
        return {k: v for k, v in hw.items() if isinstance(v, int)} if isinstance(hw, dict) else {}

    @property
    def who(self) -> str | None:
        return self.meta.get("who")


@dataclass
class Version(Tag):
    """A registered model version: the tag ``<artifact>@<version>``."""

    version: str = ""

    @property
    def verdict(self) -> str:
        """The gate verdict recorded at registration ("pass", "fail" or "unknown")."""
        gate = self.meta.get("gate")
        return gate.get("verdict", "unknown") if isinstance(gate, dict) else "unknown"

    @property
    def gate_passed(self) -> bool:
        return self.verdict == "pass"


@dataclass
class Assignment(Tag):
    """A stage assignment: the tag ``<artifact>#<stage>#<n>``."""

    stage: str = ""
    n: int = 0
    version: str | None = None
    removed: bool = False  # a GTO unassignment (``gto deprecate``): the version leaves the stage

    @property
    def action(self) -> str:
        return self.meta.get("action", "unassign" if self.removed else "promote")

    @property
    def forced(self) -> bool:
        return bool(self.meta.get("forced", False))

    @property
    def reason(self) -> str | None:
        return self.meta.get("reason")


class Registry:
    """The registry state of one artifact, read from the repository's tags in one git call.

    Args:
        settings: The artifact, stages and repository root.
        versions: Registered version tags by version string (deregistered ones left out).
        assignments: Assignment tags by stage, sorted by n.
    """

    def __init__(self, settings: RegistrySettings, versions: dict[str, Version],
                 assignments: dict[str, list[Assignment]]) -> None:
        self.settings = settings
        self.versions = versions
        self.assignments = assignments
        self.unassignments: dict[str, list[Assignment]] = {}
        self.deregistered: dict[str, Tag] = {}  # version to its (newest) deregistration tag
        self.retired: dict[str, Version] = {}  # version tags that a deregistration outdates
        self.markers: dict[str, dict[int, Assignment]] = {}  # stage to n to the assignment
        self._by_commit: dict[str, list[Version]] | None = None

    @classmethod
    def load(cls, settings: RegistrySettings) -> Registry:
        """Read every version, assignment and marker of the artifact with one for-each-ref."""
        a = settings.artifact
        marks = f"{REGISTRY_MARKERS}/{a}/"
        res = git(settings.root, "for-each-ref", f"--format={_FORMAT}",
                  f"refs/tags/{a}@*", f"refs/tags/{a}#*", marks)
        ver_re = re.compile(rf"^refs/tags/{re.escape(a)}@(v[^!#\s]+)(!)?(?:#(\d+))?$")
        asg_re = re.compile(rf"^refs/tags/{re.escape(a)}#([^#!]+)(!)?(?:#(\d+))?$")
        mark_re = re.compile(rf"^{re.escape(marks)}([^/]+)/(\d+)$")
        versions: dict[str, Version] = {}
        deregs: dict[str, Tag] = {}
        assignments: dict[str, list[Assignment]] = {}
        unassignments: dict[str, list[Assignment]] = {}
        markers: dict[str, dict[int, Assignment]] = {}
        for record in res.stdout.split("\x1e\n"):
            parts = record.split("\x00", 5)
            if len(parts) != 6 or parts[1] != "tag" or not parts[3]:
                continue  # lightweight tags carry no author or time: GTO ignores them too
            ref, _, obj, commit, when, message = parts
            time = int(when) if when.isdigit() else 0
            name = ref.removeprefix("refs/tags/")
            m = ver_re.match(ref)
            if m and SEMVER_RE.match(m.group(1)):
                if m.group(2):
                    old = deregs.get(m.group(1))
                    tag = Tag(name, obj, commit, time, message, n=int(m.group(3) or 0))
                    if old is None or tag.order > old.order:
                        deregs[m.group(1)] = tag
                else:
                    versions[m.group(1)] = Version(name, obj, commit, time, message,
                                                   version=m.group(1))
                continue
            m = asg_re.match(ref)
            if m:
                stage, removed, n = m.group(1), bool(m.group(2)), int(m.group(3) or 0)
                into = unassignments if removed else assignments
                into.setdefault(stage, []).append(Assignment(
                    name, obj, commit, time, message, stage=stage, n=n, removed=removed))
                continue
            m = mark_re.match(ref)
            if m:
                stage, n = m.group(1), int(m.group(2))
                markers.setdefault(stage, {})[n] = Assignment(
                    f"{a}#{stage}#{n}", obj, commit, time, message, stage=stage, n=n)
        retired = {}
        for version, tag in deregs.items():  # GTO: the newest of the two decides
            if version in versions and tag.order > versions[version].order:
                retired[version] = versions.pop(version)
        reg = cls(settings, versions, assignments)
        reg.retired = retired
        reg.deregistered = deregs
        reg.unassignments = unassignments
        reg.markers = markers
        for items in assignments.values():
            items.sort(key=lambda t: t.n)
        return reg

    # -- lookups ------------------------------------------------------------------

    def sorted_versions(self) -> list[Version]:
        """All versions, lowest semver first."""
        return sorted(self.versions.values(), key=lambda v: semver_key(v.version))

    def versions_at(self, commit: str) -> list[Version]:
        """Versions whose tag points at ``commit``."""
        if self._by_commit is None:
            self._by_commit = {}
            for v in self.versions.values():
                self._by_commit.setdefault(v.commit, []).append(v)
        return self._by_commit.get(commit, [])

    def check_stage(self, stage: str) -> str:
        """Return ``stage`` if it is configured, else raise naming the valid ones."""
        if stage not in self.settings.stages and stage != CANARY:
            raise LooplineError(f"unknown stage {stage!r}: valid stages are "
                                f"{', '.join(self.settings.stages)} "
                                f"(registry.stages in {PARAMS_FILE})")
        return stage

    def version(self, ref: str) -> Version:
        """The version named by ``ref`` (``v1.2.0``, ``1.2.0``, ``artifact@v1.2.0``, or ``HEAD``:
        the version registered on the checked-out commit).

        Raises:
            LooplineError: naming the unknown version and listing the latest known ones.
        """
        if ref == "HEAD":
            head = git(self.settings.root, "rev-parse", "HEAD").stdout.strip()
            at_head = self.versions_at(head)
            if not at_head:
                raise LooplineError(f"HEAD ({head[:12]}) has no version of "
                                    f"{self.settings.artifact}: run `loopline register` first")
            return max(at_head, key=lambda v: semver_key(v.version))
        named, at, _ = ref.rpartition("@")
        if at and named != self.settings.artifact:
            raise LooplineError(f"{ref!r} names artifact {named!r}, but this repository's "
                                f"artifact is {self.settings.artifact!r} (artifact in "
                                f"{PARAMS_FILE})")
        name = normalize_version(ref)
        found = self.versions.get(name)
        if found is None:
            raise LooplineError(f"unknown version {ref!r} of {self.settings.artifact}: "
                                f"{self._known_versions()}")
        return found

    def _known_versions(self, limit: int = 8) -> str:
        if not self.versions:
            return "no version is registered yet (run `loopline register`)"
        names = [v.version for v in reversed(self.sorted_versions())]
        more = f" … ({len(names)} in all)" if len(names) > limit else ""
        return "known versions are " + ", ".join(names[:limit]) + more

    def resolve(self, ref: str) -> Version:
        """A version (``v1.2.0``, ``artifact@v1.2.0``), a stage meaning its current version, or
        ``HEAD`` meaning the version registered on the checked-out commit.

        Raises:
            LooplineError: unknown version or stage, or nothing assigned to the stage.
        """
        if ref == "HEAD":
            return self.version(ref)
        if ref in self.settings.stages:
            cur = self.current(ref)
            if cur is None:
                raise LooplineError(f"no version assigned to {ref}")
            if cur.version not in self.versions:
                raise LooplineError(f"{cur.tag} points at commit {cur.commit[:12]}, which has no "
                                    f"version tag of {self.settings.artifact}")
            return self.versions[cur.version]
        if not SEMVER_RE.match(normalize_version(ref)):
            raise LooplineError(f"unknown version or stage {ref!r}: stages are "
                                f"{', '.join(self.settings.stages)}; {self._known_versions()}")
        return self.version(ref)

    def version_of(self, asg: Assignment) -> str | None:
        """The version an assignment points to: its message, else the version at its commit."""
        if asg.version is None:
            named = asg.meta.get("version")
            if isinstance(named, str) and named in self.versions:
                asg.version = named
            else:
                at = [v.version for v in self.versions_at(asg.commit)] or [
                    v for v, t in self.deregistered.items() if t.commit == asg.commit]
                asg.version = (max(at, key=semver_key) if at
                               else named if isinstance(named, str) else None)
        return asg.version

    def stage_assignments(self, stage: str) -> list[Assignment]:
        """Existing assignment tags of ``stage``, lowest n first."""
        return self.assignments.get(stage, [])

    def current(self, stage: str) -> Assignment | None:
        """The stage's current assignment, with its version resolved: the newest assignment
        whose version is still registered and was not unassigned from the stage after it
        (GTO's reading; without GTO's tags, the highest-numbered existing assignment)."""
        removed: dict[str | None, tuple] = {}
        for u in self.unassignments.get(stage, []):
            key = self.version_of(u)
            removed[key] = max(removed.get(key, u.order), u.order)
        for a in sorted(self.stage_assignments(stage), key=lambda t: t.order, reverse=True):
            version = self.version_of(a)
            if version in self.deregistered and version not in self.versions:
                continue
            if version in removed and removed[version] > a.order:
                continue
            return a
        return None

    def all_tags(self) -> list[Tag]:
        """Every tag of the artifact (versions, assignments, GTO's unassignments and
        deregistrations)."""
        return [*self.versions.values(), *self.retired.values(), *self.deregistered.values(),
                *(a for v in self.assignments.values() for a in v),
                *(a for v in self.unassignments.values() for a in v)]

    def newest_time(self) -> int:
        """The tagger time of the artifact's newest tag (0 without tags)."""
        return max([0, *(t.time for t in self.all_tags())])

    def high_water(self, remote_ns: dict[str, tuple[int, ...]] | None = None) -> dict[str, int]:
        """The highest assignment number each stage has ever used, as far as this clone can
        tell: existing tags, marker refs, the ``hw`` of the newest tags, and the remote's."""
        hw: dict[str, int] = {}

        def see(stage: str, n: int) -> None:
            hw[stage] = max(hw.get(stage, 0), n)

        for stage, items in self.assignments.items():
            for a in items:
                see(stage, a.n)
        for stage, marks in self.markers.items():
            for n in marks:
                see(stage, n)
        newest = sorted(self.all_tags(), key=lambda t: t.order, reverse=True)[:3]
        for t in newest:
            for stage, n in t.hw.items():
                see(stage, n)
        for stage, ns in (remote_ns or {}).items():
            for n in ns:
                see(stage, n)
        return hw

    def next_seq(self) -> int:
        """One above the highest sequence number of any tag of the artifact."""
        return max([0, *(t.seq for t in self.all_tags())]) + 1

    def events(self, stage: str | None = None) -> list[dict]:
        """The audit timeline, newest first (see :func:`loopline.registry.events.timeline`)."""
        from loopline.registry.events import timeline

        return timeline(self, stage)



@contextmanager
def locked_registry(settings: RegistrySettings,
                    stage: str | None = None) -> Iterator[tuple[Registry, int, list[str]]]:
    """For a command that writes tags: what a killed registry command left repaired first,
    then the registry loaded under the registry lock (and ``stage`` checked). Yields the
    registry, the lock (for the transaction) and what was repaired."""
    from loopline.registry.write import registry_lock, repair

    repaired = repair(settings.root)
    with registry_lock(settings.root) as lock:
        reg = Registry.load(settings)
        if stage is not None:
            reg.check_stage(stage)
        yield reg, lock, repaired


def open_registry(root: str | os.PathLike[str] | None = None) -> Registry:
    """Load the registry of the repository at or above ``root`` (default: the cwd), after
    finishing or undoing what a killed registry command left (see
    :func:`loopline.registry.write.repair`)."""
    from loopline.registry.write import repair

    settings = load_settings(root)
    repair(settings.root)
    return Registry.load(settings)

