"""Writing the registry's tags so that a killed command leaves the old state or the new one.

A registry change (a version tag; or an assignment tag, its marker ref and the version tag it
names) is one transaction:

1. the annotated tag object is made with ``git mktag`` (nothing points at it yet);
2. a journal entry under ``<git common dir>/loopline/journal/`` names the refs to create,
   their objects and the remote;
3. with ``--push``, one ``git push --atomic`` sends the objects straight to the remote's refs
   (all of them or none), before any local ref exists;
4. the local refs are created in one ``git update-ref --stdin`` transaction;
5. the journal entry is removed.

A process killed (SIGKILL, SIGTERM) at any step leaves at most a journal entry. The next
registry command (:func:`repair`) asks the remote whether the push landed and either creates
the local refs (the new state) or drops the entry (the old state), and says which in one
line. A lock file, also inherited by the ``git push`` child (which outlives a killed parent),
keeps two commands of one clone apart and keeps repair from judging a push still in flight.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loopline.core.errors import LooplineError
from loopline.core.files import write_text
from loopline.core.git import common_dir, git
from loopline.core.layout import REGISTRY_GIT_DIR, REGISTRY_MARKERS
from loopline.core.proc import first_line

if TYPE_CHECKING:
    from loopline.registry.tags import Registry

LOCK_WAIT_S = 300.0
# git's words for "the remote got that ref first" (client side, server side, --atomic)
_RACE_WORDS = ("already exists", "atomic transaction failed", "atomic push failed",
               "cannot lock ref", "fetch first", "stale info", "failed to update ref",
               "non-fast-forward")


def identity(root: Path) -> tuple[str, str, int, str]:
    """Who acts ($GITHUB_ACTOR, else the git committer), git's ident, its time and zone.

    Raises:
        LooplineError: when git has no user identity configured.
    """
    res = git(root, "var", "GIT_COMMITTER_IDENT", check=False)
    m = re.match(r"^(.*) <(.*)> (\d+) ([+-]\d{4})$", res.stdout.strip())
    if res.returncode != 0 or not m:
        raise LooplineError("git has no identity to sign registry tags with: set git config "
                            "user.name and user.email")
    who = os.environ.get("GITHUB_ACTOR") or f"{m.group(1)} <{m.group(2)}>"
    return who, f"{m.group(1)} <{m.group(2)}>", int(m.group(3)), m.group(4)


def marker_ref(artifact: str, stage: str, n: int) -> str:
    """The ref that records that ``<artifact>#<stage>#<n>`` was assigned (kept on deletion)."""
    return f"{REGISTRY_MARKERS}/{artifact}/{stage}/{n}"


def make_tag(root: Path, name: str, commit: str, message: str, ident: str, when: int,
             zone: str) -> str:
    """The id of a new annotated tag object ``name`` on ``commit`` (no ref points at it yet)."""
    body = (f"object {commit}\ntype commit\ntag {name}\ntagger {ident} {when} {zone}\n\n"
            f"{message}\n")
    res = git(root, "mktag", input=body, check=False)
    if res.returncode != 0:
        raise LooplineError(f"cannot create tag {name}: {first_line(res.stderr)}")
    return res.stdout.strip()


@dataclass
class Change:
    """Refs to create (name to object id), and the refs that go to the remote with them."""

    create: dict[str, str]
    push: dict[str, str]
    action: str  # register, promote, rollback: named in messages

    @property
    def tags(self) -> list[str]:
        return [r.removeprefix("refs/tags/") for r in self.create if r.startswith("refs/tags/")]


# ------------------------------------------------------------------- lock, journal


def _state_dir(root: Path) -> Path:
    return common_dir(root) / REGISTRY_GIT_DIR


@contextmanager
def registry_lock(root: Path) -> Iterator[int]:
    """Hold the clone's registry lock (an flock); yields its fd, for children to inherit."""
    path = _state_dir(root) / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LooplineError(f"another registry command holds {path} for over "
                                        f"{LOCK_WAIT_S:g} s: wait for it, then retry") from None
                time.sleep(0.05)
        yield fd
    finally:
        os.close(fd)


def _journal(root: Path) -> Path:
    return _state_dir(root) / "journal"


def _entries(root: Path) -> list[Path]:
    d = _journal(root)
    return sorted(d.glob("*.json")) if d.is_dir() else []


def _local(root: Path, refs: list[str]) -> dict[str, str]:
    """The object ids of those of ``refs`` that exist here."""
    if not refs:
        return {}
    res = git(root, "for-each-ref", "--format=%(refname) %(objectname)", *refs, check=False)
    have = dict(ln.split(" ", 1) for ln in res.stdout.splitlines() if " " in ln)
    return {r: have[r] for r in refs if r in have}


def _remote(root: Path, remote: str, refs: list[str]) -> dict[str, str]:
    """The object ids of those of ``refs`` that exist on ``remote``.

    Raises:
        LooplineError: the remote cannot be reached.
    """
    res = git(root, "ls-remote", remote, *refs, check=False)
    if res.returncode != 0:
        raise LooplineError(f"cannot read refs of remote {remote!r}: {first_line(res.stderr)}")
    have = {}
    for line in res.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        have[ref] = sha
    return {r: have[r] for r in refs if r in have}


def _create_local(root: Path, refs: dict[str, str]) -> None:
    """Create ``refs`` here in one transaction (fails if any exists already)."""
    lines = "".join(f"create {r} {obj}\n" for r, obj in refs.items())
    res = git(root, "update-ref", "--stdin", input=lines, check=False)
    if res.returncode != 0:
        raise LooplineError(f"cannot create {', '.join(refs)}: {first_line(res.stderr)}")


# ---------------------------------------------------------------------------- apply


def apply(root: Path, change: Change, remote: str | None, lock_fd: int) -> None:
    """Run one registry transaction (see the module doc), holding the lock ``lock_fd``.

    Raises:
        LooplineError: the push was refused ("another … won the race" when the remote got
            one of the names first) or failed; nothing was created here then.
    """
    entry = _journal(root) / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
    write_text(entry, json.dumps({"action": change.action, "remote": remote,
                                  "create": change.create, "push": change.push}) + "\n")
    if remote:
        try:
            _push(root, remote, change, lock_fd)
        except LooplineError:
            entry.unlink(missing_ok=True)
            raise
    _create_local(root, change.create)
    entry.unlink(missing_ok=True)


def _push(root: Path, remote: str, change: Change, lock_fd: int) -> None:
    env = {**os.environ, "LC_ALL": "C"}
    specs = [f"{obj}:{ref}" for ref, obj in {**change.push, **change.create}.items()]
    # git push (and the receive-pack it starts) inherit the lock: if this process is killed,
    # the lock stays held until the push has finished, so repair never judges one in flight
    res = git(root, "push", "--atomic", "--porcelain", remote, *specs, check=False, env=env,
              pass_fds=(lock_fd,))
    if res.returncode == 0:
        return
    text = res.stdout + "\n" + res.stderr
    try:
        there = _remote(root, remote, list(change.create))
    except LooplineError:
        there = {}
    taken = [r for r, obj in there.items() if obj != change.create[r]]
    if taken or any(w in text for w in _RACE_WORDS):
        name = (taken or list(change.create))[0].removeprefix("refs/tags/")
        what = {"register": "registration"}.get(change.action, "promotion")
        raise LooplineError(f"another {what} won the race: {name} was created on {remote} "
                            f"first; fetch tags (git fetch {remote} --tags) and retry")
    rejected = [ln.split("\t")[-1] for ln in res.stdout.splitlines() if ln.startswith("!")]
    why = rejected[0] if rejected else first_line(res.stderr)
    raise LooplineError(f"push to {remote} failed: {why} (nothing was created)")


# --------------------------------------------------------------------------- repair


def repair(root: Path) -> list[str]:
    """Finish or undo what a killed registry command left; one line per transaction.

    A transaction whose push reached the remote is completed here (its local refs are
    created); one whose push did not (or that had no remote and no local refs yet) is
    dropped. An entry whose remote cannot be reached is kept for the next command.
    """
    if not _entries(root):
        return []
    out = []
    with registry_lock(root):
        for path in _entries(root):
            line = _repair_one(root, path)
            if line:
                out.append(line)
    return out


def _repair_one(root: Path, path: Path) -> str | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        create: dict[str, str] = dict(doc["create"])
        remote = doc.get("remote")
        action = str(doc.get("action", "registry change"))
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)  # torn before its rename: nothing was pushed
        return None
    names = ", ".join(r.removeprefix("refs/tags/") for r in create
                      if r.startswith("refs/tags/"))
    local = _local(root, list(create))
    if remote:
        try:
            there = _remote(root, remote, list(create))
        except LooplineError as err:
            return f"an interrupted {action} of {names} is still unresolved: {err}"
        landed = all(there.get(r) == obj for r, obj in create.items())
    else:
        landed = all(local.get(r) == obj for r, obj in create.items())
    path.unlink(missing_ok=True)
    if landed:
        missing = {r: obj for r, obj in create.items() if r not in local}
        if not missing:
            return None
        _create_local(root, missing)
        return (f"repaired: created {names} here, which the interrupted {action} had pushed "
                f"to {remote}")
    where = f" (never pushed to {remote})" if remote else ""
    return f"repaired: dropped {names}, left unfinished by an interrupted {action}{where}"


# -------------------------------------------------------------------- the remote


def remote_tags(root: Path, remote: str, artifact: str) -> dict[str, str]:
    """The artifact's tags and marker refs on ``remote``: name to object id (one ls-remote).

    Tags are named as tags (``credit-risk#prod#3``), markers by their full ref.

    Raises:
        LooplineError: when the remote cannot be reached.
    """
    res = git(root, "ls-remote", remote, f"refs/tags/{artifact}*",
              f"{REGISTRY_MARKERS}/{artifact}/*", check=False)
    if res.returncode != 0:
        raise LooplineError(f"cannot read tags of remote {remote!r}: {first_line(res.stderr)}")
    out = {}
    for line in res.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.endswith("^{}"):
            continue
        out[ref.removeprefix("refs/tags/")] = sha
    return out


def _fetch_markers(root: Path, remote: str, refs: list[str]) -> None:
    """Fetch the remote's marker refs this clone lacks (so its history shows deleted
    assignments); best effort: the numbers themselves are already known from ls-remote."""
    if refs:
        git(root, "fetch", "-q", "--no-tags", remote, *(f"+{r}:{r}" for r in refs), check=False)


def check_remote(reg: Registry, remote: str, relevant: re.Pattern,
                 stage: str | None = None) -> tuple[int, ...]:
    """Fail when ``remote`` has relevant tags that are missing or different here.

    Returns:
        The numbers ``stage`` has used on the remote (tags and markers), never to be reused.
    """
    local = {t.tag: t.object for t in reg.versions.values()}
    local.update({a.tag: a.object for v in reg.assignments.values() for a in v})
    marks = {marker_ref(reg.settings.artifact, st, n)
             for st, items in reg.markers.items() for n in items}
    ns = []
    prefix = f"{REGISTRY_MARKERS}/{reg.settings.artifact}/{stage}/"
    there = remote_tags(reg.settings.root, remote, reg.settings.artifact)
    _fetch_markers(reg.settings.root, remote, [r for r in there if r.startswith(REGISTRY_MARKERS)
                                               and r not in marks])
    for name, sha in sorted(there.items()):
        if stage and name.startswith(prefix) and name[len(prefix):].isdigit():
            ns.append(int(name[len(prefix):]))
            continue
        m = relevant.match(name)
        if not m:
            continue
        if local.get(name) != sha:
            raise LooplineError(f"remote {remote} moved: it has {name}, which is missing or "
                                f"different here; fetch tags (git fetch {remote} --tags) and retry")
        if m.groups() and m.group(1):
            ns.append(int(m.group(1)))
    return tuple(ns)
