"""The request guard in front of the service's endpoints (serving/middleware.py), as ASGI."""

from __future__ import annotations

import asyncio
import json

import pytest

from loopline.serving.middleware import DISCONNECTED, RequestGuard


def call(headers: dict[str, str], chunks: list[bytes | None], *, method: str = "POST",
         max_bytes: int = 100, idle: float = 5.0, total: float = 60.0, stall: bool = False):
    """Run the guard over a fake app; ``None`` in ``chunks`` is a client that went away;
    ``stall``: the body never ends. Returns (status, error, body the app saw, scope, disconnects)."""
    seen: dict = {}
    sent: list[dict] = []
    disconnects: list[str] = []

    async def app(scope, receive, send):
        message = await receive()
        seen["body"] = message["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def scenario():
        queue = list(chunks)

        async def receive():
            if not queue:
                await asyncio.sleep(3600)  # a stalled client
            chunk = queue.pop(0)
            if chunk is None:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": chunk, "more_body": bool(queue) or stall}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": method, "path": "/predict",
                 "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
        guard = RequestGuard(app, max_bytes, idle_timeout=idle, total_timeout=total,
                             on_disconnect=disconnects.append)
        await guard(scope, receive, send)
        return scope

    scope = asyncio.run(scenario())
    status = sent[0]["status"] if sent else None
    error = json.loads(sent[1]["body"])["error"] if sent and status != 200 else None
    return status, error, seen.get("body"), scope, disconnects


JSON = {"content-type": "application/json", "content-length": "2"}


def test_a_json_body_reaches_the_app_whole() -> None:
    status, _, body, _, _ = call(JSON, [b"{}"])
    assert (status, body) == (200, b"{}")
    chunked = {"content-type": "application/json; charset=UTF-8", "transfer-encoding": "chunked"}
    status, _, body, _, _ = call(chunked, [b'{"a"', b": 1}", b""])
    assert (status, body) == (200, b'{"a": 1}')
    assert call({}, [b""], method="POST")[0] == 200  # no body, no Content-Type: fine
    assert call({"content-type": "text/html"}, [b""], method="GET")[0] == 200


@pytest.mark.parametrize("headers, status, words", [
    ({"content-type": "multipart/form-data", "content-length": "2"}, 415, "multipart/form-data"),
    ({"content-type": "multipart/form-data; boundary=x", "content-length": "2"}, 415, "multipart"),
    ({"content-type": "multipart/form-data"}, 415, "multipart"),  # a POST without a body too
    ({"content-type": "text/plain", "content-length": "2"}, 415, "text/plain"),
    ({"content-type": "", "content-length": "2"}, 415, "(empty)"),
    ({"content-length": "2"}, 415, "no Content-Type"),
    ({"transfer-encoding": "chunked"}, 415, "no Content-Type"),
    ({"content-type": "application/json; charset=latin-1", "content-length": "2"}, 415, "latin-1"),
    ({**JSON, "content-encoding": "gzip"}, 415, "Content-Encoding 'gzip'"),
    ({**JSON, "content-length": "12x"}, 400, "Content-Length"),
    ({**JSON, "content-length": "101"}, 413, "limit is 100 bytes, got 101"),
])
def test_unreadable_requests_get_a_4xx_naming_why(headers: dict, status: int, words: str) -> None:
    got, error, body, _, _ = call(headers, [b"{}"])
    assert got == status and words in error
    assert body is None  # the app never saw it


def test_a_chunked_body_over_the_limit_gets_413() -> None:
    headers = {"content-type": "application/json", "transfer-encoding": "chunked"}
    status, error, body, _, _ = call(headers, [b"x" * 60, b"x" * 60, b""])
    assert status == 413 and "limit is 100 bytes" in error and body is None


def test_a_stalled_body_gets_408_within_the_idle_timeout() -> None:
    headers = {"content-type": "application/json", "transfer-encoding": "chunked"}
    status, error, body, _, _ = call(headers, [b"{"], idle=0.2, stall=True)
    assert status == 408 and "0.2s without data" in error and body is None
    status, error, _, _, _ = call({**JSON, "content-length": "50"}, [b"{"], idle=0.2, stall=True)
    assert status == 408  # a declared length that never arrives too
    status, error, _, _, _ = call(headers, [b"{"] * 3, idle=10.0, total=0.0, stall=True)
    assert status == 408 and "0s in all" in error


def test_a_client_gone_mid_body_is_marked_not_answered() -> None:
    headers = {"content-type": "application/json", "transfer-encoding": "chunked"}
    status, _, body, scope, disconnects = call(headers, [b"{", None])
    assert status is None and body is None
    assert scope[DISCONNECTED] is True and disconnects == ["/predict"]
