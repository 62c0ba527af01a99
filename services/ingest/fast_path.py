"""`POST /v1/{type}` served as plain ASGI, ahead of FastAPI's routing.

For a single event, FastAPI's per-request machinery (routing, dependency solving, request and
response objects, exception-handler wrappers) cost more CPU than validating and publishing the
event itself (measured with bench/ingest.py and pyinstrument). This middleware answers the seven
ingest paths directly with the same `Intake` and the same error bodies; the FastAPI routes of
those paths stay registered so OpenAPI documents them (and they answer identically if reached).
It sets `scope["route"]` so the HTTP metrics label the request with its route template.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from services.ingest.api import SUCCESS_BODY, error_parts
from services.ingest.domain.body import too_large
from services.ingest.domain.errors import IngestError
from services.ingest.intake import Intake, RawRequest

_JSON_HEADERS = [(b"content-type", b"application/json")]


class IngestFastPath:
    def __init__(self, app: ASGIApp, *, routes: Mapping[str, tuple[str, BaseRoute]]) -> None:
        """`routes` maps each ingest path to its kind and the FastAPI route documenting it."""
        self._app = app
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            found = self._routes.get(scope["path"])
            if found is not None:
                kind, route = found
                scope["route"] = route
                await self._ingest(kind, scope, receive, send)
                return
        await self._app(scope, receive, send)

    async def _ingest(self, kind: str, scope: Scope, receive: Receive, send: Send) -> None:
        intake: Intake = scope["app"].state.intake
        encoding = authorization = declared = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-encoding":
                encoding = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
        query_key = None
        if scope["query_string"]:
            values = parse_qs(scope["query_string"].decode("latin-1")).get("writeKey")
            query_key = values[0] if values else None
        status, body, headers = 200, SUCCESS_BODY, _JSON_HEADERS
        try:
            limit = intake.limits.max_request_bytes
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise too_large(int(declared), limit)
            raw = await _receive_body(receive, limit)
            await intake.ingest(RawRequest(kind, raw, encoding, authorization, query_key))
        except IngestError as exc:
            status, body, extra = error_parts(exc)
            headers = _JSON_HEADERS + [(k.encode(), v.encode()) for k, v in extra.items()]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _receive_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, refused with 413 as soon as it exceeds `limit` bytes."""
    chunks: list[Any] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            break
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise too_large(size, limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
