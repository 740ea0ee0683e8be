"""The model registry: versions and stage assignments as annotated Git tags.

The layout is GTO's, so ``gto show`` and ``gto history`` read the same repository:

- a version is an annotated tag ``<artifact>@vX.Y.Z`` on the commit whose ``dvc.lock``
  produced the model; its message is one line of JSON (metrics, gate verdict and checks,
  model sha256, data and params hashes, who, when, and a registry-wide sequence number);
- a stage assignment is an annotated tag ``<artifact>#<stage>#<n>`` (n = 1, 2, 3 … per
  artifact and stage) on the same commit; its message is JSON too (action promote or
  rollback, version, stage, forced, reason, who, when, sequence number).

The current model of a stage is its highest-numbered assignment tag that still exists, so
deleting that tag (locally, or ``git push --delete origin TAG``) reverts the stage to the
previous assignment. Nothing is ever rewritten: promotions and rollbacks append tags.
Versions are ordered by semver and events by (tagger time, sequence number), never by
the one-second tagger time alone.

Everything is read with one ``git for-each-ref`` call and messages are parsed lazily, so
``which``, ``promote`` and ``rollback`` stay fast with thousands of tags. This module
imports nothing heavy: no gitpython, dvc, pandas, pydantic or hydra (``get`` imports
``dvc.api`` only when an object is missing from the local cache).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

from loopline.core.errors import LooplineError

PARAMS_FILE = "params.yaml"
DEFAULT_STAGES = ("staging", "prod")
BUMPS = ("major", "minor", "patch")
MODEL_FILE = "model.onnx"
CARD_FILE = "card.json"
GATE_FILE = "gate.json"
MESSAGE_SCHEMA = 1

# GTO's name rule (gto.constants.name): artifact and stage names must match it.
NAME_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-/_]*[a-zA-Z0-9])?$")
SEMVER_RE = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$"
)
_SEQ_RE = re.compile(r'^\{"loopline": \d+, "seq": (\d+)')
_FIELDS = ("%(refname:lstrip=2)", "%(objecttype)", "%(objectname)", "%(*objectname)",
           "%(taggerdate:unix)", "%(contents)")
_FORMAT = "%00".join(_FIELDS) + "%1e"


# ------------------------------------------------------------------------ config


@dataclass(frozen=True)
class RegistryConfig:
    """What the registry needs from params.yaml.

    Attributes:
        root: The repository directory (where params.yaml and dvc.lock are).
        artifact: The artifact name (``artifact`` in params.yaml).
        stages: Allowed stages (``registry.stages``, default staging and prod).
    """

    root: Path
    artifact: str
    stages: tuple[str, ...] = DEFAULT_STAGES


def find_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The nearest directory at or above ``start`` that holds params.yaml.

    Raises:
        LooplineError: when no parent directory has a params.yaml.
    """
    here = Path(start or os.getcwd()).resolve()
    for d in (here, *here.parents):
        if (d / PARAMS_FILE).is_file():
            return d
    raise LooplineError(f"not a loopline repo: no {PARAMS_FILE} in {here} or any parent")


def _top_level_block(text: str, key: str) -> str | None:
    """The lines of the top-level YAML key ``key`` (its line and the indented ones below)."""
    m = re.search(rf"^{re.escape(key)}:.*(?:\n(?:[ \t#].*|[ \t]*)(?=\n|$))*", text, re.M)
    return m.group(0) if m else None


def _load_yaml(text: str, source: str) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as err:
        raise LooplineError(f"{source} is not valid YAML: {str(err).splitlines()[0]}") from None


def _read_keys(root: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """Read only ``keys`` from params.yaml (a plain ``key: value`` line needs no YAML parser)."""
    path = root / PARAMS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise LooplineError(f"cannot read {path}: {err.strerror}") from None
    out: dict[str, Any] = {}
    complex_blocks = []
    for key in keys:
        block = _top_level_block(text, key)
        if block is None:
            continue
        simple = re.fullmatch(rf"{re.escape(key)}:[ \t]*([a-zA-Z0-9][\w./-]*)[ \t]*\n?", block)
        if simple:
            out[key] = simple.group(1)
        else:
            complex_blocks.append(block)
    if complex_blocks:
        parsed = _load_yaml("\n".join(complex_blocks), PARAMS_FILE) or {}
        out.update(parsed if isinstance(parsed, dict) else {})
    return out


def load_config(root: str | os.PathLike[str] | None = None) -> RegistryConfig:
    """Read ``artifact`` and ``registry.stages`` from params.yaml.

    Raises:
        LooplineError: when the artifact is missing or a name is not a valid tag name.
    """
    base = find_root(root)
    keys = _read_keys(base, ("artifact", "registry"))
    artifact = keys.get("artifact")
    if not isinstance(artifact, str) or not NAME_RE.match(artifact):
        raise LooplineError(f"{PARAMS_FILE}: artifact must be a name like credit-risk "
                            f"(got {artifact!r})")
    reg = keys.get("registry") or {}
    stages = reg.get("stages", list(DEFAULT_STAGES)) if isinstance(reg, dict) else None
    if not isinstance(stages, list) or not stages:
        raise LooplineError(f"{PARAMS_FILE}: registry.stages must be a non-empty list of "
                            "stage names")
    for stage in stages:
        if not isinstance(stage, str) or not NAME_RE.match(stage):
            raise LooplineError(f"{PARAMS_FILE}: registry.stages: {stage!r} is not a valid "
                                "stage name (letters, digits, '-', '_', '/'; starts and ends "
                                "alphanumeric)")
    return RegistryConfig(root=base, artifact=artifact, stages=tuple(stages))


# --------------------------------------------------------------------------- git


def git(root: Path, *args: str, input: str | None = None, check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run git in ``root``; raise a one-line LooplineError when it fails and ``check``."""
    try:
        res = subprocess.run(["git", *args], cwd=root, input=input, capture_output=True,
                             text=True, encoding="utf-8", errors="replace", env=env)
    except OSError as err:
        raise LooplineError(f"cannot run git: {err.strerror}") from None
    if check and res.returncode != 0:
        raise LooplineError(f"git {args[0]} failed in {root}: {_first_line(res.stderr)}")
    return res


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.startswith(("fatal:", "error:"))]
    return (fatal or lines or ["(no output)"])[0]


def identity(root: Path) -> tuple[str, int]:
    """Who acts ($GITHUB_ACTOR, else the git committer) and the tagger time git will use.

    Raises:
        LooplineError: when git has no user identity configured.
    """
    res = git(root, "var", "GIT_COMMITTER_IDENT", check=False)
    m = re.match(r"^(.*) <(.*)> (\d+) [+-]\d{4}$", res.stdout.strip())
    if res.returncode != 0 or not m:
        raise LooplineError("git has no identity to sign registry tags with: set git config "
                            "user.name and user.email")
    who = os.environ.get("GITHUB_ACTOR") or f"{m.group(1)} <{m.group(2)}>"
    return who, int(m.group(3))


def utc_iso(ts: int) -> str:
    """A unix time as UTC ISO 8601 (``2024-05-01T12:00:00Z``)."""
    from datetime import datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------- semver


def semver_key(version: str) -> tuple:
    """A sort key that orders versions by semver (pre-releases before their release).

    Raises:
        LooplineError: when ``version`` is not vMAJOR.MINOR.PATCH[-pre][+build].
    """
    m = SEMVER_RE.match(version)
    if not m:
        raise LooplineError(f"not a version: {version!r} (expected vMAJOR.MINOR.PATCH, "
                            "e.g. v1.2.0)")
    pre = m.group(4)
    pre_key: tuple = (1,) if pre is None else (0, *(
        (0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")))
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), pre_key


def bump_version(latest: str | None, part: str) -> str:
    """The next version after ``latest`` (v0.1.0 when there is none)."""
    if part not in BUMPS:
        raise LooplineError(f"--bump must be one of {', '.join(BUMPS)} (got {part!r})", exit_code=2)
    if latest is None:
        return "v0.1.0"
    major, minor, patch, _ = semver_key(latest)
    if part == "major":
        return f"v{major + 1}.0.0"
    if part == "minor":
        return f"v{major}.{minor + 1}.0"
    return f"v{major}.{minor}.{patch + 1}"


def normalize_version(ref: str) -> str:
    """``1.2.0``, ``v1.2.0`` and ``artifact@v1.2.0`` all become ``v1.2.0``."""
    ref = ref.rsplit("@", 1)[-1]
    return ref if ref.startswith("v") else f"v{ref}"


# ------------------------------------------------------------------------- tags


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
class _Tag:
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
class Version(_Tag):
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
class Assignment(_Tag):
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
        config: The artifact, stages and repository root.
        versions: Version tags by version string.
        assignments: Assignment tags by stage, sorted by n.
    """

    def __init__(self, config: RegistryConfig, versions: dict[str, Version],
                 assignments: dict[str, list[Assignment]]) -> None:
        self.config = config
        self.versions = versions
        self.assignments = assignments
        self._by_commit: dict[str, list[Version]] | None = None

    @classmethod
    def load(cls, config: RegistryConfig) -> Registry:
        """Read every version and assignment tag of the artifact with one for-each-ref."""
        a = config.artifact
        res = git(config.root, "for-each-ref", f"--format={_FORMAT}",
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
        reg = cls(config, versions, assignments)
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
        if stage not in self.config.stages:
            raise LooplineError(f"unknown stage {stage!r}: valid stages are "
                                f"{', '.join(self.config.stages)} "
                                f"(registry.stages in {PARAMS_FILE})")
        return stage

    def version(self, ref: str) -> Version:
        """The version named by ``ref`` (``v1.2.0``, ``1.2.0``, ``artifact@v1.2.0``, or ``HEAD``:
        the version registered on the checked-out commit).

        Raises:
            LooplineError: naming the unknown version and listing the latest known ones.
        """
        if ref == "HEAD":
            head = git(self.config.root, "rev-parse", "HEAD").stdout.strip()
            at_head = self.versions_at(head)
            if not at_head:
                raise LooplineError(f"HEAD ({head[:12]}) has no version of {self.config.artifact}: "
                                    "run `loopline register` first")
            return max(at_head, key=lambda v: semver_key(v.version))
        name = normalize_version(ref)
        found = self.versions.get(name)
        if found is None:
            raise LooplineError(f"unknown version {ref!r} of {self.config.artifact}: "
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
        if ref in self.config.stages:
            cur = self.current(ref)
            if cur is None:
                raise LooplineError(f"no version assigned to {ref}")
            if cur.version not in self.versions:
                raise LooplineError(f"{cur.tag} points at commit {cur.commit[:12]}, which has no "
                                    f"version tag of {self.config.artifact}")
            return self.versions[cur.version]
        if not SEMVER_RE.match(normalize_version(ref)):
            raise LooplineError(f"unknown version or stage {ref!r}: stages are "
                                f"{', '.join(self.config.stages)}; {self._known_versions()}")
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
        tags: list[_Tag] = [*self.versions.values(),
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
                                  "stage": stage, "tag": f"{self.config.artifact}#{stage}#{n}",
                                  "n": n, "commit": None, "who": None, "forced": False,
                                  "reason": "assignment tag deleted (reverted)", "gate": None,
                                  "seq": None}))
            prev = a.n
        return out


def open_registry(root: str | os.PathLike[str] | None = None) -> Registry:
    """Load the registry of the repository at or above ``root`` (default: the cwd)."""
    return Registry.load(load_config(root))


# ------------------------------------------------------------- creating tags


def _dumps(meta: dict) -> str:
    return json.dumps(meta, ensure_ascii=True, allow_nan=False, default=str)


def _header(seq: int, event: str) -> dict:
    # "loopline" and "seq" first: the sequence number is read without parsing the JSON
    return {"loopline": MESSAGE_SCHEMA, "seq": seq, "event": event}


def create_tag(root: Path, name: str, commit: str, message: str) -> None:
    """Create the annotated tag ``name`` on ``commit`` in one ``git tag`` (atomic ref update).

    Raises:
        LooplineError: when the tag already exists (a concurrent operation) or git fails.
    """
    res = git(root, "tag", "-a", "--cleanup=verbatim", "-F", "-", name, commit,
              input=message + "\n", check=False)
    if res.returncode != 0:
        if "already exists" in res.stderr:
            raise LooplineError(f"tag {name} already exists (created concurrently?): retry")
        raise LooplineError(f"cannot create tag {name}: {_first_line(res.stderr)}")


def delete_local_tag(root: Path, name: str) -> None:
    """Delete a tag this process created (used when pushing it failed)."""
    git(root, "update-ref", "-d", f"refs/tags/{name}", check=False)


def remote_tags(root: Path, remote: str, artifact: str) -> dict[str, str]:
    """The artifact's tags on ``remote``: name to tag object id (one ``git ls-remote``).

    Raises:
        LooplineError: when the remote cannot be reached.
    """
    res = git(root, "ls-remote", "--tags", remote, f"refs/tags/{artifact}*", check=False)
    if res.returncode != 0:
        raise LooplineError(f"cannot read tags of remote {remote!r}: {_first_line(res.stderr)}")
    out = {}
    for line in res.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith("refs/tags/") and not ref.endswith("^{}"):
            out[ref[len("refs/tags/"):]] = sha
    return out


def _check_remote(reg: Registry, remote: str, relevant: re.Pattern) -> tuple[int, ...]:
    """Fail when ``remote`` has relevant tags that are missing or different here.

    Returns:
        The assignment numbers of the remote's relevant tags (to never reuse one).
    """
    local = {t.tag: t.object for t in reg.versions.values()}
    local.update({a.tag: a.object for v in reg.assignments.values() for a in v})
    ns = []
    for name, sha in sorted(remote_tags(reg.config.root, remote, reg.config.artifact).items()):
        m = relevant.match(name)
        if not m:
            continue
        if local.get(name) != sha:
            raise LooplineError(f"remote {remote} moved: it has {name}, which is missing or "
                                f"different here; fetch tags (git fetch {remote} --tags) and retry")
        if m.groups() and m.group(1):
            ns.append(int(m.group(1)))
    return tuple(ns)


def push_tags(root: Path, remote: str, names: list[str], created: str) -> None:
    """``git push --atomic`` the tags; on failure delete the tag ``created`` and raise.

    Raises:
        LooplineError: "remote REMOTE moved" when the remote already has one of the tags.
    """
    env = {**os.environ, "LC_ALL": "C"}
    refspecs = [f"refs/tags/{n}:refs/tags/{n}" for n in names]
    try:
        res = git(root, "push", "--atomic", "--porcelain", remote, *refspecs, check=False, env=env)
    except BaseException:  # interrupted: leave no local tag that may not be on the remote
        delete_local_tag(root, created)
        raise
    if res.returncode == 0:
        return
    delete_local_tag(root, created)
    rejected = [ln.split("\t") for ln in res.stdout.splitlines() if ln.startswith("!\t")]
    clashes = [f[1].split(":")[-1].removeprefix("refs/tags/") for f in rejected
               if len(f) > 2 and ("already exists" in f[2] or "fetch first" in f[2]
                                  or "stale info" in f[2])]
    if clashes:
        raise LooplineError(f"remote {remote} moved: {clashes[0]} already exists there; fetch tags "
                            f"(git fetch {remote} --tags) and retry (local tag {created} removed)")
    raise LooplineError(f"push to {remote} failed: {_first_line(res.stderr)} "
                        f"(local tag {created} removed)")


# ------------------------------------------------------------------ register


def _md5(path: Path) -> str:
    import hashlib

    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_json(path: Path, what: str) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LooplineError(f"{what} is missing: {path}") from None
    except (OSError, ValueError) as err:
        raise LooplineError(f"{what} {path} is not valid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise LooplineError(f"{what} {path} is not a JSON object")
    return doc


def _paths(root: Path) -> tuple[str, str]:
    """The models and reports directories (``paths`` in params.yaml)."""
    paths = _read_keys(root, ("paths",)).get("paths")
    paths = paths if isinstance(paths, dict) else {}
    return str(paths.get("models", "models")), str(paths.get("reports", "reports"))


def lock_outs(lock_text: str, source: str) -> dict[str, dict]:
    """The ``outs`` of every stage in a dvc.lock, by path."""
    lock = _load_yaml(lock_text, source) or {}
    outs: dict[str, dict] = {}
    stages = lock.get("stages", {}) if isinstance(lock, dict) else {}
    for st in stages.values() if isinstance(stages, dict) else []:
        for out in (st or {}).get("outs", []) or []:
            if isinstance(out, dict) and "path" in out:
                outs[str(out["path"])] = out
    return outs


def _lock_md5(outs: dict[str, dict], path: str, where: str) -> str:
    out = outs.get(path)
    md5 = out.get("md5") if out else None
    if not md5:
        raise LooplineError(f"dvc.lock {where} has no md5 for the output {path}")
    return str(md5)


def _check_clean(root: Path) -> str:
    """HEAD's commit, after checking that no tracked file is modified."""
    status = git(root, "status", "--porcelain", "--untracked-files=no", "--ignore-submodules")
    if status.stdout.strip():
        files = [ln[3:] for ln in status.stdout.splitlines()][:5]
        raise LooplineError("the work tree has uncommitted changes (" + ", ".join(files)
                            + "): commit them first, so the version names the commit that made it")
    head = git(root, "rev-parse", "--verify", "-q", "HEAD^{commit}", check=False)
    if head.returncode != 0:
        raise LooplineError(f"{root} has no commit yet: commit the pipeline and its dvc.lock first")
    return head.stdout.strip()


def _check_model(root: Path, models: str) -> tuple[dict, dict[str, str]]:
    """The model card, after checking the workspace model is the one HEAD's dvc.lock made."""
    lock = git(root, "show", "HEAD:./dvc.lock", check=False)
    if lock.returncode != 0:
        raise LooplineError("dvc.lock is not committed at HEAD: run the pipeline and commit "
                            "dvc.lock")
    outs = lock_outs(lock.stdout, "dvc.lock")
    md5s = {}
    for name in (MODEL_FILE, CARD_FILE):
        rel = f"{models}/{name}"
        want = _lock_md5(outs, rel, "at HEAD")
        path = root / rel
        if not path.is_file():
            raise LooplineError(f"{rel} is missing in the workspace: run `dvc pull` or "
                                "`loopline run`")
        got = _md5(path)
        if got != want:
            raise LooplineError(f"{rel} in the workspace (md5 {got[:12]}) is not the one the "
                                f"committed dvc.lock produced (md5 {want[:12]}): run `dvc "
                                "checkout` or rerun the pipeline and commit dvc.lock")
        md5s[name] = got
    return _read_json(root / models / CARD_FILE, "model card"), md5s


def _check_gate(root: Path, reports: str, card: dict, force: bool) -> dict:
    """reports/gate.json, after checking it judged this model and (unless forced) passed."""
    gate = _read_json(root / reports / GATE_FILE, "the gate report (run the gate stage)")
    verdict = gate.get("verdict")
    cand = (gate.get("candidate") or {}).get("onnx_sha256")
    sha = (card.get("model_files") or {}).get("onnx_sha256")
    if cand and sha and cand != sha:
        raise LooplineError(f"{reports}/{GATE_FILE} judged another model (onnx_sha256 {cand[:12]}, "
                            f"the card says {sha[:12]}): rerun the gate")
    if verdict not in ("pass", "fail"):
        raise LooplineError(f"{reports}/{GATE_FILE}: verdict must be 'pass' or 'fail' "
                            f"(got {verdict!r})")
    if verdict != "pass" and not force:
        failed = [f"{c.get('name')} {c.get('value')} {c.get('op')} {c.get('threshold')}"
                  for c in gate.get("checks", []) if isinstance(c, dict) and not c.get("passed")]
        raise LooplineError(f"{reports}/{GATE_FILE}: the gate failed ("
                            + ("; ".join(failed) or "no passing verdict")
                            + "): a model that failed its gate is not registered "
                            "(use --force --reason to record it anyway)")
    return gate


def _check_force(force: bool, reason: str | None) -> str | None:
    reason = (reason or "").strip() or None
    if force != bool(reason):
        raise LooplineError("--force and --reason go together: a forced override must say why",
                            exit_code=2)
    return reason


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
    reason = _check_force(force, reason)
    cfg = load_config(root)
    base = cfg.root
    commit = _check_clean(base)
    reg = Registry.load(cfg)
    existing = reg.versions_at(commit)
    if existing:
        raise LooplineError(f"commit {commit[:12]} already has version {existing[0].tag}")
    models, reports = _paths(base)
    card, md5s = _check_model(base, models)
    gate = _check_gate(base, reports, card, force)
    name = normalize_version(version) if version else bump_version(
        reg.latest().version if reg.latest() else None, bump)
    semver_key(name)
    if name in reg.versions:
        raise LooplineError(f"version {name} of {cfg.artifact} already exists "
                            f"(on commit {reg.versions[name].commit[:12]})")
    tag = f"{cfg.artifact}@{name}"
    if push:
        _check_remote(reg, push, re.compile(rf"^{re.escape(cfg.artifact)}@(?:v\S+)$"))
    who, now = identity(base)
    meta = {**_header(reg.next_seq(), "register"), "artifact": cfg.artifact, "version": name,
            "commit": commit, "who": who, "when": utc_iso(now), "forced": force, "reason": reason,
            "gate": {k: gate.get(k) for k in ("verdict", "checks", "champion", "candidate")},
            "metrics": card.get("metrics", {}),
            "model": {"onnx_sha256": (card.get("model_files") or {}).get("onnx_sha256"),
                      "onnx_md5": md5s[MODEL_FILE], "card_md5": md5s[CARD_FILE]},
            "data": {"raw_md5": (card.get("data") or {}).get("raw_md5")},
            "params_hash": card.get("params_hash")}
    create_tag(base, tag, commit, _dumps(meta))
    if push:
        push_tags(base, push, [tag], created=tag)
    return {"artifact": cfg.artifact, "version": name, "tag": tag, "commit": commit,
            "pushed": push, "metadata": meta}


# ------------------------------------------------------- promote and rollback


def _assign(reg: Registry, v: Version, stage: str, action: str, *, forced: bool,
            reason: str | None, push: str | None, extra: dict | None = None) -> dict:
    """Append the assignment tag ``<artifact>#<stage>#<n>`` for version ``v``."""
    cfg = reg.config
    remote_ns: tuple[int, ...] = ()
    if push:
        relevant = re.compile(rf"^{re.escape(cfg.artifact)}#{re.escape(stage)}#(\d+)$"
                              rf"|^{re.escape(v.tag)}$()")
        remote_ns = _check_remote(reg, push, relevant)
    n = reg.next_n(stage, remote_ns)
    tag = f"{cfg.artifact}#{stage}#{n}"
    who, now = identity(cfg.root)
    meta = {**_header(reg.next_seq(), action), "action": action, "artifact": cfg.artifact,
            "version": v.version, "stage": stage, "forced": forced, "reason": reason,
            "who": who, "when": utc_iso(now), **(extra or {})}
    create_tag(cfg.root, tag, v.commit, _dumps(meta))
    if push:
        push_tags(cfg.root, push, [v.tag, tag], created=tag)
    return {"artifact": cfg.artifact, "stage": stage, "version": v.version, "tag": tag, "n": n,
            "commit": v.commit, "action": action, "forced": forced, "reason": reason,
            "who": who, "pushed": push, "created": True, **(extra or {})}


def _gate_override(v: Version, force: bool, what: str) -> None:
    if not v.gate_passed and not force:
        raise LooplineError(f"{v.tag} did not pass its gate (verdict {v.verdict}): refusing to "
                            f"{what}; use --force --reason \"...\" to override (recorded)")


def _unchanged(reg: Registry, cur: Assignment, action: str) -> dict:
    return {"artifact": reg.config.artifact, "stage": cur.stage, "version": cur.version,
            "tag": cur.tag, "n": cur.n, "commit": cur.commit, "action": action,
            "forced": False, "reason": None, "who": None, "pushed": None, "created": False}


def promote(version: str, stage: str, *, root: str | os.PathLike[str] | None = None,
            force: bool = False, reason: str | None = None, push: str | None = None) -> dict:
    """Assign ``version`` (or ``HEAD``: the version of the checked-out commit) to ``stage``
    (a new tag ``<artifact>#<stage>#<n>``).

    A version whose gate did not pass needs ``force`` and ``reason``, both recorded in the
    tag. Promoting the stage's current version again creates nothing.

    Raises:
        LooplineError: unknown version or stage, failed gate, or the remote moved.
    """
    reason = _check_force(force, reason)
    reg = open_registry(root)
    reg.check_stage(stage)
    v = reg.version(version)
    cur = reg.current(stage)
    if cur is not None and cur.version == v.version:
        return _unchanged(reg, cur, "promote")
    _gate_override(v, force, f"promote it to {stage}")
    return _assign(reg, v, stage, "promote", forced=force and not v.gate_passed, reason=reason,
                   push=push, extra={"previous": cur.version if cur else None})


def rollback_target(reg: Registry, stage: str, cur: Assignment) -> Version:
    """The highest version below the current one (by semver) whose gate passed."""
    cur_key = semver_key(cur.version) if cur.version and SEMVER_RE.match(cur.version) else None
    for v in reversed(reg.sorted_versions()):
        if cur_key is not None and semver_key(v.version) >= cur_key:
            continue
        if v.gate_passed:
            return v
    raise LooplineError(f"nothing to roll back to: no version of {reg.config.artifact} earlier "
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
    reason = _check_force(force, reason)
    reg = open_registry(root)
    reg.check_stage(stage)
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
    return _assign(reg, target, stage, "rollback", forced=force and not target.gate_passed,
                   reason=reason, push=push, extra={"previous": cur.version})


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
    return {"artifact": reg.config.artifact, "stage": stage, "version": cur.version,
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


# ------------------------------------------------------------------------ get


def _dvc_cache_dir(root: Path) -> Path:
    """The DVC cache directory (``cache.dir`` in .dvc/config.local or .dvc/config)."""
    for name in ("config.local", "config"):
        path = root / ".dvc" / name
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        m = re.search(r"^\[cache\][^\[]*?^\s*dir\s*=\s*(.+?)\s*$", text, re.M | re.S)
        if m:
            d = Path(m.group(1).strip("'\""))
            return d if d.is_absolute() else (root / ".dvc" / d).resolve()
    return root / ".dvc" / "cache"


def cache_paths(root: Path, md5: str) -> list[Path]:
    """Where DVC keeps an object: DVC 3 (files/md5/ab/cdef…), then DVC 2 (ab/cdef…)."""
    cache = _dvc_cache_dir(root)
    return [cache / "files" / "md5" / md5[:2] / md5[2:], cache / md5[:2] / md5[2:]]


def _copy_verified(src: Path, dest: Path, md5: str) -> bool:
    """Copy ``src`` to a temp file next to ``dest``; rename it there if its md5 matches."""
    import shutil

    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        shutil.copyfile(src, tmp)
        if _md5(tmp) != md5:
            return False
        os.replace(tmp, dest)
        return True
    except OSError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _fetch_from_remote(root: Path, commit: str, rel: str, dest: Path, md5: str) -> str | None:
    """Stream ``rel`` at ``commit`` from the DVC remote into ``dest``; the error, or None."""
    import shutil

    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        import dvc.api

        with (dvc.api.open(rel, repo=str(root), rev=commit, mode="rb") as src,
              open(tmp, "wb") as out):
            shutil.copyfileobj(src, out, 1 << 20)
        if _md5(tmp) != md5:
            return f"the remote copy of {rel} does not match md5 {md5}"
        os.replace(tmp, dest)
        return None
    except Exception as err:  # dvc raises many types; report the first line
        text = str(err).strip()
        return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"
    finally:
        tmp.unlink(missing_ok=True)


def get(ref: str, out_dir: str | os.PathLike[str],
        root: str | os.PathLike[str] | None = None) -> dict:
    """Write ``out_dir/model.onnx`` and ``out_dir/card.json`` of a version or stage.

    The objects' md5s come from dvc.lock at the version's commit; they are copied from the
    local DVC cache, else fetched from the DVC remote at that commit, and always verified.

    Raises:
        LooplineError: unknown version or stage, or objects neither cached nor on the remote.
    """
    reg = open_registry(root)
    v = reg.resolve(ref)
    base = reg.config.root
    models, _ = _paths(base)
    lock = git(base, "show", f"{v.commit}:./dvc.lock", check=False)
    if lock.returncode != 0:
        raise LooplineError(f"{v.tag} (commit {v.commit[:12]}) has no dvc.lock")
    outs = lock_outs(lock.stdout, f"dvc.lock at {v.tag}")
    dest_dir = Path(out_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    written, sources = {}, {}
    for name in (MODEL_FILE, CARD_FILE):
        rel = f"{models}/{name}"
        md5 = _lock_md5(outs, rel, f"at {v.tag}")
        dest = dest_dir / name
        if any(p.is_file() and _copy_verified(p, dest, md5) for p in cache_paths(base, md5)):
            sources[name] = "cache"
        else:
            err = _fetch_from_remote(base, v.commit, rel, dest, md5)
            if err is not None:
                raise LooplineError(f"{rel} of {v.tag} (md5 {md5}) is not in the DVC cache and "
                                    f"cannot be fetched from the DVC remote: {err}")
            sources[name] = "remote"
        written[name] = str(dest)
    return {"artifact": reg.config.artifact, "version": v.version, "tag": v.tag, "commit": v.commit,
            "files": written, "source": sources}
