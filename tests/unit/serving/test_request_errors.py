"""The middleware that records failed requests (serving/request_errors.py)."""

from __future__ import annotations

import pytest


def test_request_errors_middleware_records_each_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from loopline.serving import request_errors

    seen: list[tuple] = []
    monkeypatch.setattr(request_errors, "SINKS",
                        [lambda ts, route, status, version: seen.append((route, status)
                                                                        + ((version,) if version else ()))])

    def app_answering(status: int, then: BaseException | None = None):
        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            if then is not None:
                raise then
        return app

    def app_raising(exc: BaseException, routed: str | None = None):
        async def app(scope, receive, send):
            if routed:  # the service routed the request to a version, then failed
                request_errors.routed_to({**scope}, routed)  # a shallow copy, as downstream
            raise exc
        return app

    async def call(app, path: str = "/predict") -> None:
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            pass

        try:
            await request_errors.RequestErrors(app)({"type": "http", "path": path}, receive, send)
        except (RuntimeError, asyncio.CancelledError):
            pass

    async def scenario() -> None:
        await call(app_answering(200))
        await call(app_answering(400), "/predict_batch")
        await call(app_answering(422), "/admin/reload")  # not an inference route
        await call(app_answering(400, then=RuntimeError("after the answer")))  # once, not twice
        await call(app_raising(RuntimeError("bug")), "/feedback")
        await call(app_raising(asyncio.CancelledError()))  # BentoML's timeout
        await call(app_raising(RuntimeError("candidate failed"), routed="v2"))
        request_errors.SINKS[:] = [lambda *a: 1 / 0]  # a broken sink never breaks a response
        await call(app_answering(400))

    asyncio.run(scenario())
    assert seen == [("/predict_batch", 400), ("/predict", 400), ("/feedback", 500), ("/predict", 504),
                    ("/predict", 500, "v2")]  # recorded under the version it was routed to


def test_a_client_gone_mid_body_is_recorded_as_499_not_500(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from loopline.serving import request_errors
    from loopline.serving.middleware import RequestGuard

    seen: list[tuple] = []
    monkeypatch.setattr(request_errors, "SINKS",
                        [lambda ts, route, status, version: seen.append((route, status)
                                                                        + ((version,) if version else ()))])

    async def app(scope, receive, send):  # never reached: the guard reads the body first
        raise AssertionError("the app saw a half body")

    async def scenario() -> None:
        messages = [{"type": "http.request", "body": b'{"rec', "more_body": True},
                    {"type": "http.disconnect"}]

        async def receive():
            return messages.pop(0)

        async def send(message):
            raise AssertionError(f"answered a client that went away: {message}")

        scope = {"type": "http", "method": "POST", "path": "/predict",
                 "headers": [(b"content-type", b"application/json"),
                             (b"transfer-encoding", b"chunked")]}
        await request_errors.RequestErrors(RequestGuard(app, 1000))(scope, receive, send)

    asyncio.run(scenario())
    assert seen == [("/predict", request_errors.CLIENT_DISCONNECTED)]
