"""The service's OpenAPI document rewritten to what the service answers (serving/openapi.py)."""

from __future__ import annotations

import asyncio

import orjson

from loopline.serving.openapi import DocumentedErrors, document


def bentoml_doc() -> dict:
    """The shape of BentoML 1.4's document for two endpoints."""
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/InvalidArgument"}}}
    return {
        "components": {"schemas": {"InvalidArgument": {"type": "object", "properties": {
            "error": {"type": "string"}, "detail": {"type": "string", "title": "Error Detail"}}}}},
        "paths": {
            "/readyz": {"get": {"responses": {"200": {"description": "ok"}}}},
            "/predict": {"post": {"responses": {"200": {}, "400": {"content": ref}},
                                  "requestBody": {"content": {"application/json": {"schema": {
                                      "type": "object", "required": ["records"],
                                      "properties": {"records": {"type": "array"}}}}}}}},
            "/admin/reload": {"post": {"responses": {"200": {}}, "requestBody": {"content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "ref": {"type": "string", "default": None}}}}}}}}}}


def test_the_document_lists_every_answer_the_service_gives() -> None:
    doc = document(bentoml_doc())
    detail = doc["components"]["schemas"]["InvalidArgument"]["properties"]["detail"]
    assert {"type": "array", "items": {"type": "object"}} in detail["anyOf"]
    predict = doc["paths"]["/predict"]["post"]
    assert {"200", "400", "408", "413", "415"} == set(predict["responses"])
    assert predict["requestBody"]["required"] is True
    reload = doc["paths"]["/admin/reload"]["post"]
    assert {"401", "403", "409"} <= set(reload["responses"])
    assert "required" not in reload["requestBody"]  # an empty body is fine there
    assert reload["requestBody"]["content"]["application/json"]["schema"]["properties"]["ref"][
        "nullable"] is True
    assert doc["paths"]["/readyz"] == bentoml_doc()["paths"]["/readyz"]


def test_the_middleware_rewrites_only_the_document() -> None:
    sent: list[dict] = []

    def app_answering(body: bytes):
        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body[:5], "more_body": True})
            await send({"type": "http.response.body", "body": body[5:]})
        return app

    async def call(path: str, body: bytes) -> None:
        async def send(message):
            sent.append(message)

        await DocumentedErrors(app_answering(body))(
            {"type": "http", "method": "GET", "path": path}, None, send)

    original = orjson.dumps(bentoml_doc())
    asyncio.run(call("/docs.json", original))
    out = orjson.loads(sent[1]["body"])
    assert "415" in out["paths"]["/predict"]["post"]["responses"]
    assert dict(sent[0]["headers"])[b"content-length"] == str(len(sent[1]["body"])).encode()
    sent.clear()
    asyncio.run(call("/predict", original))  # anything else passes through untouched
    assert b"".join(m.get("body", b"") for m in sent[1:]) == original
