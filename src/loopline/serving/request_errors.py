"""Request errors: requests to the inference routes answered 4xx or 5xx.

:class:`RequestErrors` is ASGI middleware around the service: a request to /predict,
/predict_batch or /feedback answered 4xx or 5xx, including BentoML's 504 on a timeout, is
passed once to the sinks (the service's inference log, table ``errors``) with its time,
route and status, for the monitor's error rate. A client that went away before its body
was read (:mod:`loopline.serving.middleware`) is recorded with status
:data:`CLIENT_DISCONNECTED` (499, as nginx counts it): neither a success nor a server error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from loopline.serving.middleware import DISCONNECTED

logger = logging.getLogger("loopline.serving")

CLIENT_DISCONNECTED = 499
ROUTES = frozenset({"/predict", "/predict_batch", "/feedback"})
# set by the service once its log is open (one service, so one sink, per worker process):
# sink(time, route, status, version the request was routed to or None)
SINKS: list[Callable[[float, str, int, str | None], None]] = []
# ASGI scope key: a dict the service fills with the version a request was routed to, so a
# failure after routing is recorded under the version that failed (a rollout's candidate)
ROUTED = "loopline.routed"


def routed_to(scope: Any, version: str) -> None:
    """Say which version a request was routed to (the service, after routing)."""
    holder = scope.get(ROUTED)
    if holder is not None:
        holder["version"] = version


class RequestErrors:
    """ASGI middleware: an inference route answered 4xx or 5xx is recorded once."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") not in ROUTES:
            return await self.app(scope, receive, send)
        route = scope["path"]
        started = False
        routed: dict[str, str] = {}  # a shallow copy of the scope downstream shares it
        scope[ROUTED] = routed

        async def watch(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] >= 400:
                    record(route, message["status"], routed.get("version"))
            await send(message)

        try:
            await self.app(scope, receive, watch)
            if not started and scope.get(DISCONNECTED):
                record(route, CLIENT_DISCONNECTED, routed.get("version"))
            return None
        except asyncio.CancelledError:  # BentoML's timeout, outside us, answers 504
            if not started:
                record(route, 504, routed.get("version"))
            raise
        except Exception:  # the server answers 500
            if not started:
                record(route, 500, routed.get("version"))
            raise


def record(route: str, status: int, version: str | None = None) -> None:
    """Pass a request error to every sink; a failing sink never fails the response."""
    for sink in SINKS:
        try:
            sink(time.time(), route, status, version)
        except Exception:
            logger.exception("could not record a request error on %s", route)
