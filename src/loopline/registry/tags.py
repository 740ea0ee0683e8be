"""The registry's tags: versions and stage assignments of one artifact, read in one git call.

The layout is GTO's, so ``gto show`` and ``gto history`` read the same repository:

- a version is an annotated tag ``<artifact>@vX.Y.Z`` on the commit whose ``dvc.lock``
  produced the model; its message is one line of JSON (metrics, gate verdict and checks,
  model sha256, data and params hashes, who, when, and a registry-wide sequence number);
- a stage assignment is an annotated tag ``<artifact>#<stage>#<n>`` (n = 1, 2, 3 … per
  artifact and stage) on the same commit; its message is JSON too (action promote or
  rollback, version, stage, forced, reason, who, when, sequence number).

The current model of a stage is its highest-numbered assignment tag that still exists, so
deleting that tag (locally, or ``git push --delete origin TAG``) reverts the stage to the
previous assignment. Versions are ordered by semver and events by (tagger time, sequence
number), never by the one-second tagger time alone.

Everything is read with one ``git for-each-ref`` call and messages are parsed lazily, so
``which``, ``promote`` and ``rollback`` stay fast with thousands of tags.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC

from loopline.core.errors import LooplineError
from loopline.core.git import git
from loopline.core.layout import PARAMS_FILE
from loopline.registry.semver import SEMVER_RE, normalize_version, semver_key
from loopline.registry.settings import RegistrySettings, load_settings

MESSAGE_SCHEMA = 1
# A message loopline writes starts {"loopline": SCHEMA, "seq": N, ...} (see header()), so the
# sequence number of thousands of tags is read without parsing their JSON.
_SEQ_RE = re.compile(r'^\{"loopline": \d+, "seq": (\d+)')
_FIELDS = ("%(refname:lstrip=2)", "%(objecttype)", "%(objectname)", "%(*objectname)",
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
    def order(self) -> tuple[int, int]:
        """Event order: tagger time, then sequence number (tags made in one second)."""
        return self.time, self.seq

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

    @property
    def action(self) -> str:
        return self.meta.get("action", "promote")

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
        versions: Version tags by version string.
        assignments: Assignment tags by stage, sorted by n.
    """

    def __init__(self, settings: RegistrySettings, versions: dict[str, Version],
                 assignments: dict[str, list[Assignment]]) -> None:
        self.settings = settings
        self.versions = versions
        self.assignments = assignments
        self._by_commit: dict[str, list[Version]] | None = None

    @classmethod
    def load(cls, settings: RegistrySettings) -> Registry:
        """Read every version and assignment tag of the artifact with one for-each-ref."""
        a = settings.artifact
        res = git(settings.root, "for-each-ref", f"--format={_FORMAT}",
                  f"refs/tags/{a}@*", f"refs/tags/{a}#*")
        ver_re = re.compile(rf"^{re.escape(a)}@(v\S+)$")
        asg_re = re.compile(rf"^{re.escape(a)}#([^#!]+)#(\d+)$")
        versions: dict[str, Version] = {}
        assignments: dict[str, list[Assignment]] = {}
        for record in res.stdout.split("\x1e\n"):
            parts = record.split("\x00", 5)
            if len(parts) != 6 or parts[1] != "tag" or not parts[3]:
                continue  # lightweight tags carry no author or time: GTO ignores them too
            name, _, obj, commit, when, message = parts
            time = int(when) if when.isdigit() else 0
            m = ver_re.match(name)
            if m and SEMVER_RE.match(m.group(1)):
                versions[m.group(1)] = Version(name, obj, commit, time, message, version=m.group(1))
                continue
            m = asg_re.match(name)
            if m:
                assignments.setdefault(m.group(1), []).append(Assignment(
                    name, obj, commit, time, message, stage=m.group(1), n=int(m.group(2))))
        reg = cls(settings, versions, assignments)
        for items in assignments.values():
            items.sort(key=lambda t: t.n)
        return reg

    # -- lookups ------------------------------------------------------------------

    def sorted_versions(self) -> list[Version]:
        """All versions, lowest semver first."""
        return sorted(self.versions.values(), key=lambda v: semver_key(v.version))

    def latest(self) -> Version | None:
        """The highest version by semver."""
        if not self.versions:
            return None
        return max(self.versions.values(), key=lambda v: semver_key(v.version))

    def versions_at(self, commit: str) -> list[Version]:
        """Versions whose tag points at ``commit``."""
        if self._by_commit is None:
            self._by_commit = {}
            for v in self.versions.values():
                self._by_commit.setdefault(v.commit, []).append(v)
        return self._by_commit.get(commit, [])

    def check_stage(self, stage: str) -> str:
        """Return ``stage`` if it is configured, else raise naming the valid ones."""
        if stage not in self.settings.stages:
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
                at = self.versions_at(asg.commit)
                asg.version = (max(at, key=lambda v: semver_key(v.version)).version if at
                               else named if isinstance(named, str) else None)
        return asg.version

    def stage_assignments(self, stage: str) -> list[Assignment]:
        """Existing assignment tags of ``stage``, lowest n first."""
        return self.assignments.get(stage, [])

    def current(self, stage: str) -> Assignment | None:
        """The stage's highest-numbered assignment tag, with its version resolved."""
        items = self.stage_assignments(stage)
        if not items:
            return None
        self.version_of(items[-1])
        return items[-1]

    def next_n(self, stage: str, remote_ns: tuple[int, ...] = ()) -> int:
        """The next assignment number: one above every existing local and remote one."""
        local = [a.n for a in self.stage_assignments(stage)]
        return max([0, *local, *remote_ns]) + 1

    def next_seq(self) -> int:
        """One above the highest sequence number of any tag of the artifact."""
        tags: list[Tag] = [*self.versions.values(),
                            *(a for v in self.assignments.values() for a in v)]
        return max([0, *(t.seq for t in tags)]) + 1

    # -- history ------------------------------------------------------------------

    def events(self, stage: str | None = None) -> list[dict]:
        """The audit timeline, newest first: registrations, promotions, rollbacks, deletions.

        A gap in a stage's assignment numbers below an assignment that loopline wrote is an
        assignment tag that was deleted; it is reported as a "deleted" event just before the
        next existing assignment. Gaps below tags written by other tools are not reported:
        ``gto assign`` numbers tags per artifact, not per stage, so its gaps mean nothing.
        """
        rows: list[tuple[tuple, dict]] = []
        if stage is None:
            for v in self.versions.values():
                rows.append(((*v.order, 0), self._version_event(v)))
        stages = [stage] if stage else sorted(self.assignments)
        for st in stages:
            present = self.stage_assignments(st)
            for a in present:
                rows.append(((*a.order, 1), self._assignment_event(a)))
            rows += self._deleted_events(st, present)
        rows.sort(key=lambda r: r[0], reverse=True)
        return [row for _, row in rows]

    def _version_event(self, v: Version) -> dict:
        m = v.meta
        return {"time": utc_iso(v.time), "event": "register", "version": v.version, "stage": None,
                "tag": v.tag, "n": None, "commit": v.commit, "who": m.get("who"),
                "forced": bool(m.get("forced")), "reason": m.get("reason"),
                "gate": v.verdict, "seq": v.seq}

    def _assignment_event(self, a: Assignment) -> dict:
        version = self.version_of(a)
        gate = self.versions[version].verdict if version in self.versions else "unknown"
        return {"time": utc_iso(a.time), "event": a.action, "version": version, "stage": a.stage,
                "tag": a.tag, "n": a.n, "commit": a.commit, "who": a.who, "forced": a.forced,
                "reason": a.reason, "gate": gate, "seq": a.seq}

    def _deleted_events(self, stage: str, present: list[Assignment]) -> list[tuple[tuple, dict]]:
        out = []
        prev = 0
        for a in present:
            for n in range(prev + 1, a.n) if a.meta.get("loopline") else ():
                key = (*a.order, 0, n)  # just before the assignment that followed it
                out.append((key, {"time": None, "event": "deleted", "version": None,
                                  "stage": stage, "tag": f"{self.settings.artifact}#{stage}#{n}",
                                  "n": n, "commit": None, "who": None, "forced": False,
                                  "reason": "assignment tag deleted (reverted)", "gate": None,
                                  "seq": None}))
            prev = a.n
        return out


def open_registry(root: str | os.PathLike[str] | None = None) -> Registry:
    """Load the registry of the repository at or above ``root`` (default: the cwd)."""
    return Registry.load(load_settings(root))

