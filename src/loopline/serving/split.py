"""The traffic split of a rollout: the declared share of requests goes to the candidate.

The rollout under way is read from the registry (:mod:`loopline.registry.rollout`) when the
service starts or reloads, and rides in the spec entry of the served model as ``rollout``
(the candidate's bundle, its sha256 and the share), so ``POST /admin/reload`` after
``loopline rollout advance`` or ``abort`` changes the share in every worker
(:mod:`loopline.serving.reload`) while requests in flight finish on the split they began with.

Routing is a hash and a compare: a request that names a caller (header ``X-Loopline-Key`` or
a ``key`` field) is routed by a keyed hash of it, so a caller stays on one version within a
step (and, since the hash is fixed for the rollout, a caller on the candidate stays there
when the share grows); otherwise by its random request id. Both models are loaded once: a
new share reuses the loaded candidate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopline.core.errors import LooplineError
from loopline.serving.bundle import ServedVersion

KEY_HEADER = "x-loopline-key"
_BITS = 48  # a request id's last 12 hex digits are random; a key's hash is cut to the same width
_FULL = 1 << _BITS


@dataclass(frozen=True, eq=False)
class Split:
    """Which version answers a request: the champion, or for ``share`` % the candidate."""

    champion: ServedVersion
    candidate: ServedVersion | None = None
    share: float = 0.0
    tag: str | None = None
    _cut: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        cut = round(self.share / 100.0 * _FULL) if self.candidate is not None else 0
        object.__setattr__(self, "_cut", min(max(cut, 0), _FULL))

    def pick(self, key: str | None, rid: str) -> ServedVersion:
        """The version for a request: by ``key`` when given (sticky), else by ``rid``."""
        if not self._cut:
            return self.champion
        if key:
            h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=6,
                                               key=self.candidate.version.encode()).digest())
        else:
            h = int(rid[-12:], 16)
        return self.candidate if h < self._cut else self.champion

    def route(self, key: str | None, headers: Mapping[str, str], rid: str) -> ServedVersion:
        """:meth:`pick` with the key of the body, else of the ``X-Loopline-Key`` header."""
        if not self._cut:
            return self.champion
        return self.pick(key or headers.get(KEY_HEADER), rid)

    def describe(self) -> dict[str, Any]:
        return {"candidate_version": self.candidate.version if self.candidate else None,
                "share": self.share if self.candidate else 0.0, "rollout": self.tag}


def state(entry: Mapping[str, Any]) -> tuple:
    """What a spec entry asks a worker to serve: versions, sha256s and the share."""
    r = entry.get("rollout") or {}
    return (entry.get("version"), entry.get("sha256"), r.get("version"), r.get("sha256"),
            r.get("share"))


def make(champion: ServedVersion, rollout: Mapping[str, Any] | None,
         load: Callable[[dict[str, Any]], ServedVersion], previous: Split | None) -> Split:
    """The split for ``champion`` and a spec entry's ``rollout`` (None: all to the champion);
    the candidate of ``previous`` is reused when it is the same file.

    Raises:
        LooplineError: the candidate takes other inputs or classes than the champion.
    """
    if not rollout:
        return Split(champion)
    old = previous.candidate if previous is not None else None
    if old is not None and (old.version, old.sha256) == (rollout["version"], rollout["sha256"]):
        candidate = old
    else:
        candidate = load(dict(rollout))
    if not candidate.same_contract(champion):
        raise LooplineError(f"rollout candidate {candidate.version} takes different inputs or "
                            f"classes than {champion.version}: it cannot share its traffic")
    return Split(champion, candidate, float(rollout["share"]), rollout.get("tag"))


def with_rollout(root: Path, entry: dict[str, Any], ref: str | None, *, models: str,
                 default_stage: str) -> dict[str, Any]:
    """``entry`` (the model of ``ref``) with the rollout under way to ``default_stage``, when
    ``ref`` follows that stage (None or the stage's name) and a rollout is recorded."""
    if ref not in (None, default_stage) or entry.get("source") != "registry":
        return entry
    from loopline.registry.rollout import active
    from loopline.registry.tags import open_registry
    from loopline.serving.spec import resolve_model

    cur = active(open_registry(root))
    if cur is None or cur["stage"] != default_stage or not cur["share"]:
        return entry
    if cur["version"] == entry["version"]:
        return entry  # already the stage's version: nothing to split
    candidate = resolve_model(root, cur["version"], models=models, default_stage=default_stage)
    return {**entry, "rollout": {**candidate, "share": cur["share"], "tag": cur["tag"],
                                 "strategy": cur["strategy"], "step": cur["step"]}}
