"""What wraps the service's endpoints: the body limit, a quiet log for bad requests, and the
stand-in for a disabled inference log. (Request errors are recorded by
:mod:`loopline.serving.request_errors`.)
"""

from __future__ import annotations

import logging
from typing import Any

import orjson


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before it is read."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def _reject(self, send: Any, declared: int | None) -> None:
        body = orjson.dumps({"error": f"request body too large: limit is {self.max_bytes} bytes"
                             + (f", got {declared}" if declared is not None else "")})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    return await self._reject(send, declared)
                return await self.app(scope, receive, send)
        # no Content-Length (chunked): read up to the limit, then replay the body to the app
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client went away
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                return await self._reject(send, None)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return await self.app(scope, replay, send)


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
