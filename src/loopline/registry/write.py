"""Writing the registry's tags: who acts, the tag message, creating tags, pushing them.

A tag is created with one ``git tag`` (an atomic ref update) and pushed with
``git push --atomic``; when a push fails, the tag this process created is removed again,
so no local tag claims what the remote does not have.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from loopline.core.errors import LooplineError
from loopline.core.git import git
from loopline.core.proc import first_line

if TYPE_CHECKING:
    from loopline.registry.tags import Registry

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
        raise LooplineError(f"cannot create tag {name}: {first_line(res.stderr)}")


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
        raise LooplineError(f"cannot read tags of remote {remote!r}: {first_line(res.stderr)}")
    out = {}
    for line in res.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith("refs/tags/") and not ref.endswith("^{}"):
            out[ref[len("refs/tags/"):]] = sha
    return out


def check_remote(reg: Registry, remote: str, relevant: re.Pattern) -> tuple[int, ...]:
    """Fail when ``remote`` has relevant tags that are missing or different here.

    Returns:
        The assignment numbers of the remote's relevant tags (to never reuse one).
    """
    local = {t.tag: t.object for t in reg.versions.values()}
    local.update({a.tag: a.object for v in reg.assignments.values() for a in v})
    ns = []
    for name, sha in sorted(remote_tags(reg.settings.root, remote, reg.settings.artifact).items()):
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
    raise LooplineError(f"push to {remote} failed: {first_line(res.stderr)} "
                        f"(local tag {created} removed)")

