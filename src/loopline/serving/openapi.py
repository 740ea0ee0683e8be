"""The service's OpenAPI document as the service really answers.

BentoML generates ``/docs.json`` from the endpoints, but documents a 400's ``detail`` as a
string where it is the list of validation errors, leaves out that a body with required
fields is required and that an optional field takes null, and knows nothing of the answers given
before a request reaches it (:class:`loopline.serving.middleware.RequestGuard`: 408, 413,
415) or of the admin endpoint's (401, 403, 409). :class:`DocumentedErrors` rewrites the
document on its way out, so clients and schema-driven tests see every answer.
"""

from __future__ import annotations

from typing import Any

import orjson

DOCS = "/docs.json"
REFUSED = "RequestRefused"
GUARD = {408: "Request Timeout: the body did not arrive in time",
         413: "Payload Too Large: the body is over serve.max_body_mb",
         415: "Unsupported Media Type: the body must be uncompressed application/json"}
ADMIN = {401: "Unauthorized: missing or wrong bearer token",
         403: "Forbidden: reload is disabled (no admin token set for the service)",
         409: "Conflict: the version cannot be served here"}


def document(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (BentoML's OpenAPI document) with the errors the service really answers."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    invalid = schemas.get("InvalidArgument", {}).get("properties", {})
    if "detail" in invalid:  # pydantic's errors: a list of {type, loc, msg}
        invalid["detail"] = {"title": "Error Detail", "anyOf": [
            {"type": "string"}, {"type": "array", "items": {"type": "object"}}]}
    schemas[REFUSED] = {"type": "object", "title": REFUSED, "required": ["error"],
                        "properties": {"error": {"type": "string", "title": "Message"}}}
    ref = {"application/json": {"schema": {"$ref": f"#/components/schemas/{REFUSED}"}}}
    for route, item in doc.get("paths", {}).items():
        post = item.get("post")
        if post is None:
            continue
        _request_body(post.get("requestBody") or {})
        extra = {**GUARD, **(ADMIN if route.endswith("/admin/reload") else {})}
        for status, text in extra.items():
            post.setdefault("responses", {}).setdefault(
                str(status), {"description": text, "content": ref})
    return doc


def _request_body(body: dict[str, Any]) -> None:
    """A body with required fields is itself required; a field defaulting to null takes null."""
    schema = (body.get("content", {}).get("application/json") or {}).get("schema") or {}
    if schema.get("required"):
        body["required"] = True
    for prop in (schema.get("properties") or {}).values():
        if "default" in prop and prop["default"] is None and "type" in prop:
            prop["nullable"] = True


class DocumentedErrors:
    """ASGI middleware: ``GET /docs.json`` answers :func:`document` of BentoML's document."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != DOCS or scope.get("method") != "GET":
            return await self.app(scope, receive, send)
        start: dict[str, Any] = {}
        body = bytearray()

        async def keep(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            out = bytes(body)
            if start.get("status") == 200:
                try:
                    out = orjson.dumps(document(orjson.loads(out)))
                except (orjson.JSONDecodeError, AttributeError, TypeError):
                    pass  # not the document we know: pass it on unchanged
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(out)).encode())]})
            await send({"type": "http.response.body", "body": out})

        return await self.app(scope, receive, keep)
