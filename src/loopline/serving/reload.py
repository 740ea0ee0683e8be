"""Reloading a running service: the one implementation, server side and client side.

Server side, :class:`Reloader` holds the version a worker serves. ``POST /admin/reload``
(bearer token) resolves a stage or version in the registry, swaps the model in (a request
in flight keeps the one it started with) and writes the *control file*; every worker polls
that file and follows, and a worker started later begins with what it names.

Client side, :func:`request_reload` is what ``loopline reload`` and the monitor's rollback
call.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopline.core.errors import LooplineError
from loopline.core.layout import MODELS_DEFAULT
from loopline.serving import split
from loopline.serving.bundle import ServedVersion

logger = logging.getLogger("loopline.serving")


class NoRegistry(LooplineError):
    """The deployment has no registry to resolve a stage in (a built Bento)."""


def authorize(header: str, token_env: str) -> tuple[int, dict]:
    """``(200, {})`` when ``header`` is ``Bearer <the token in $token_env>``, else 401/403."""
    token = os.environ.get(token_env, "")
    if not token:
        return 403, {"error": f"reload is disabled: {token_env} is not set for the service"}
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                             token.encode()):
        return 401, {"error": "missing or wrong bearer token"}
    return 200, {}


class Reloader:
    """The version one worker serves, switched on request and kept in step with the others.

    Args:
        spec: the service spec (:mod:`loopline.serving.spec`).
        load: loads the version of a spec entry.
        count: called with ``"followed"`` or ``"failed"`` for each switch the watcher makes.
    """

    def __init__(self, spec: dict[str, Any], load: Callable[[dict[str, Any]], ServedVersion],
                 count: Callable[[str], None]) -> None:
        self.spec, self._load, self._count = spec, load, count
        self.control = Path(spec["control"]) if spec.get("control") else None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # a worker (re)started after a reload serves what the others were switched to
        first = self._followed() or spec["model"]
        self.served = load(first)
        # the version that answers each request: the champion, or a rollout's candidate
        self.split = split.make(self.served, first.get("rollout"), load, None)
        self._applied = split.state(first)

    def _followed(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.control.read_text(encoding="utf-8")) if self.control else None
        except (OSError, ValueError):
            return None

    def handle(self, authorization: str, ref: str | None) -> tuple[int, dict]:
        """``POST /admin/reload``: the HTTP status and body (blocking: run it in a thread)."""
        from loopline.model.runtime import IntegrityError

        status, body = authorize(authorization, self.spec["admin_token_env"])
        if status != 200:
            return status, body
        try:
            return 200, self.reload(ref)
        except (IntegrityError, NoRegistry) as err:
            return 409, {"error": str(err)}
        except LooplineError as err:
            return 400, {"error": str(err)}

    def reload(self, ref: str | None) -> dict:
        """Resolve ``ref`` in the registry, load it, swap it in, tell the other workers."""
        from loopline.serving.spec import resolve_model, write_spec

        root = self.spec.get("root")
        if not root:
            raise NoRegistry("no registry in this deployment (a built Bento serves the version "
                             "it was built with): deploy the image of the wanted version")
        with self._lock:
            want = ref if ref is not None else self.spec.get("ref")
            models = self.spec.get("models", MODELS_DEFAULT)
            stage = self.spec.get("default_stage", "prod")
            entry = resolve_model(Path(root), want, models=models, default_stage=stage)
            entry = split.with_rollout(Path(root), entry, want, models=models,
                                       default_stage=stage)
            previous, before = self.served, self.split.describe()
            new = self._swap(entry)
            if self.control is not None:
                write_spec(self.control, entry)
            after = self.split.describe()
        return {"model_version": new.version, "previous_version": previous.version,
                "sha256": new.sha256, **after, "previous_share": before["share"],
                "changed": new.version != previous.version or after != before}

    def _swap(self, entry: dict[str, Any]) -> ServedVersion:
        old = self.served
        if entry["version"] == old.version and entry["sha256"] == old.sha256:
            new = old
        else:
            new = self._load(entry)
            if not new.same_contract(old):
                raise LooplineError(f"{new.version} takes different inputs or classes than "
                                    f"{old.version}; restart the service to switch to it")
        routed = split.make(new, entry.get("rollout"), self._load, self.split)
        self.split, self.served = routed, new  # a request reads self.split once
        self._applied = split.state(entry)
        if new is not old:
            logger.info("reloaded: now serving %s (was %s)", new.version, old.version)
        if routed.candidate is not None:
            logger.info("rollout %s: %g%% of traffic to %s", routed.tag, routed.share,
                        routed.candidate.version)
        return new

    def start(self) -> None:
        """Follow, in a daemon thread, the reloads made through other workers."""
        if self.control is not None:
            threading.Thread(target=self._follow, name="loopline-reload-watch",
                             daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _follow(self) -> None:
        while not self._stop.wait(self.spec["reload_poll"]):
            if not self.control.exists():
                continue
            with self._lock:
                try:  # the file is tiny: compare its content, not its mtime
                    entry = json.loads(self.control.read_text(encoding="utf-8"))
                    if split.state(entry) == self._applied:
                        continue
                    self._swap(entry)
                    self._count("followed")
                except (OSError, ValueError, LooplineError) as err:
                    self._count("failed")
                    logger.error("reload from %s failed, still serving %s: %s",
                                 self.control, self.served.version, err)


# ---------------------------------------------------------------------------- client


@dataclass(frozen=True)
class ReloadResult:
    """What a service answered to ``POST /admin/reload``, or why it was not asked.

    ``message`` is one line for a person; ``why`` the short reason of a failure.
    """

    done: bool
    message: str
    why: str | None = None
    status_code: int | None = None
    body: dict = field(default_factory=dict)

    def action(self) -> dict:
        """The record of the reload among the monitor's actions."""
        if self.status_code is None:
            return {"action": "reload", "done": False, "why": self.why}
        return {"action": "reload", "done": self.done, "status_code": self.status_code,
                "model_version": self.body.get("model_version"), "why": self.body.get("error")}


def request_reload(url: str, ref: str | None, token_env: str, *,
                   timeout: float = 120.0) -> ReloadResult:
    """Ask the service at ``url`` to switch to ``ref`` (None: what it was started with).

    The admin token is read from the environment variable ``token_env``. Never raises for
    a service that is unreachable or refuses: the result says so.
    """
    import httpx

    token = os.environ.get(token_env)
    if not token:
        return ReloadResult(False, f"{token_env} is not set: the service's admin token is "
                            "needed", why=f"{token_env} not set")
    try:
        res = httpx.post(f"{url.rstrip('/')}/admin/reload", json={"ref": ref},
                         headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
    except httpx.HTTPError as err:
        return ReloadResult(False, f"cannot reach {url}: {err}", why=type(err).__name__)
    try:
        body = res.json()
    except ValueError:
        body = {"error": res.text[:200]}
    if res.status_code != 200:
        return ReloadResult(False, f"reload refused ({res.status_code}): "
                            f"{body.get('error', body)}", why=body.get("error"),
                            status_code=res.status_code, body=body)
    message = (f"now serving {body['model_version']} (was {body['previous_version']})"
               if body.get("model_version") != body.get("previous_version") else
               f"{'still' if body.get('changed') else 'already'} serving {body['model_version']}")
    if body.get("candidate_version"):
        message += (f"; {body['candidate_version']} answers {body['share']:g}% of traffic "
                    f"(rollout {body.get('rollout')})")
    elif body.get("previous_share"):
        message += "; the rollout ended: all traffic to it"
    return ReloadResult(True, message, status_code=res.status_code, body=body)
