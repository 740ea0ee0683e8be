"""What wraps the service's endpoints: the request guard, a quiet log for bad requests, and
the stand-in for a disabled inference log. (Request errors are recorded by
:mod:`loopline.serving.request_errors`.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

#: what the service accepts as a request body (``application/json``, optionally ``; charset=utf-8``)
JSON_TYPES = frozenset({"application/json"})
#: the scope key set when the client went away before its body was read
DISCONNECTED = "loopline.client_disconnected"


def _media_type(value: str) -> tuple[str, dict[str, str]]:
    """``"Application/JSON; charset=UTF-8"`` -> ``("application/json", {"charset": "utf-8"})``."""
    kind, *params = value.split(";")
    parsed = {}
    for param in params:
        key, _, val = param.partition("=")
        parsed[key.strip().lower()] = val.strip().strip('"').lower()
    return kind.strip().lower(), parsed


class RequestGuard:
    """ASGI middleware: a request the service cannot read gets a 4xx before it reaches BentoML.

    - a body that is not JSON (another or no Content-Type, multipart with or without a
      boundary, a charset other than UTF-8): 415;
    - a compressed body (any Content-Encoding but identity): 415;
    - a body over ``max_bytes`` (declared, or counted while a chunked body arrives): 413;
    - a body that stops arriving for ``idle_timeout`` seconds, or takes longer than
      ``total_timeout``: 408, so a stalled client never holds a worker (nor its shutdown).

    The body is read here, within those bounds, and handed to the app whole; a client that
    disconnects before it is complete gets no answer, is counted by ``on_disconnect`` and
    marks the scope (:data:`DISCONNECTED`) for :mod:`loopline.serving.request_errors`.
    """

    def __init__(self, app: Any, max_bytes: int, idle_timeout: float = 5.0,
                 total_timeout: float = 60.0,
                 on_disconnect: Callable[[str], None] | None = None) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.idle_timeout, self.total_timeout = idle_timeout, total_timeout
        self.on_disconnect = on_disconnect or (lambda path: None)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers: dict[bytes, bytes] = {}
        for key, value in scope["headers"]:
            headers[key.lower()] = value
        refused = self._refuse(scope["method"], headers)
        if refused is not None:
            return await _reply(send, *refused)
        if b"content-length" not in headers and b"transfer-encoding" not in headers:
            return await self.app(scope, receive, send)  # no body
        body = await self._read(scope, receive, send)
        if body is None:
            return None
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    def _refuse(self, method: str, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        """``(status, error)`` for a request refused on its headers alone, else None."""
        encoding = headers.get(b"content-encoding", b"").decode("latin-1").strip().lower()
        if encoding not in ("", "identity"):
            return 415, f"Content-Encoding {encoding!r} is not accepted: send the body uncompressed"
        length = headers.get(b"content-length")
        declared = 0
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return 400, "Content-Length is not a number"
            if declared > self.max_bytes:
                return 413, (f"request body too large: limit is {self.max_bytes} bytes, "
                             f"got {declared}")
        has_body = declared > 0 or b"transfer-encoding" in headers
        ctype = headers.get(b"content-type")
        if ctype is None:
            return (415, "no Content-Type: send the body as application/json") if has_body else None
        if not has_body and method not in ("POST", "PUT", "PATCH"):
            return None
        kind, params = _media_type(ctype.decode("latin-1"))
        if kind not in JSON_TYPES:
            return 415, f"Content-Type {kind or '(empty)'!r} is not accepted: send application/json"
        if params.get("charset", "utf-8") not in ("utf-8", "utf8"):
            return 415, f"charset {params['charset']!r} is not accepted: send UTF-8"
        return None

    async def _read(self, scope: Any, receive: Any, send: Any) -> bytes | None:
        """The whole body, or None once an answer was sent (or the client went away)."""
        body = bytearray()
        deadline = time.monotonic() + self.total_timeout
        while True:
            wait = min(self.idle_timeout, deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(receive(), max(wait, 0.0))
            except TimeoutError:
                await _reply(send, 408, "request body not received in time (limits: "
                             f"{self.idle_timeout:g}s without data, {self.total_timeout:g}s "
                             "in all)")
                return None
            if message["type"] != "http.request":  # http.disconnect: the client went away
                scope[DISCONNECTED] = True
                self.on_disconnect(scope.get("path", ""))
                return None
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await _reply(send, 413, f"request body too large: limit is {self.max_bytes} bytes")
                return None
            if not message.get("more_body", False):
                return bytes(body)


async def _reply(send: Any, status: int, error: str) -> None:
    """A JSON error answer; the connection is closed after it (the body may be unread)."""
    body = orjson.dumps({"error": error})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class QuietBadRequests(logging.Filter):
    """Drop BentoML's traceback for a request that failed validation (it answers 400 and
    the access log keeps the line): a flood of bad payloads must not flood the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ValidationError)


def quiet_bad_requests() -> None:
    """Install :class:`QuietBadRequests` on BentoML's HTTP app logger."""
    logging.getLogger("bentoml._internal.server.http_app").addFilter(QuietBadRequests())


class NoLog:
    """Stands in for the inference log when ``serve.log.enabled`` is false (benchmarks)."""

    def predictions(self, *args: Any) -> None:
        pass

    def feedback(self, items: Any, ts: float) -> None:
        pass

    def request_error(self, *args: Any) -> None:
        pass

    def close(self) -> None:
        pass
