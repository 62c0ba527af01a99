"""The ASGI app uvicorn runs: `POST /v1/{type}` answered directly, everything else by FastAPI.

For a single event, FastAPI's per-request machinery (its middleware stack, routing, dependency
solving, request and response objects, exception-handler wrappers) cost more CPU than validating
and publishing the event itself (measured with bench/ingest.py under py-spy). `IngestApp` sits in
front of the FastAPI app: it answers the seven ingest paths with the same `Intake` and the same
error bodies, and counts and times them itself; every other request, and the lifespan, goes to
FastAPI (whose routes of those paths stay registered so OpenAPI documents them, and answer
identically if reached). An unexpected error is a logged `500 internal_error`, as FastAPI's
handler answers it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI
from prometheus_client import Counter, Histogram
from starlette.types import Receive, Scope, Send

from services.ingest.api import SUCCESS_BODY, error_parts
from services.ingest.domain.body import too_large
from services.ingest.domain.errors import IngestError, Unavailable
from services.ingest.intake import Intake, RawRequest
from services.ingest.metrics import IterationBuffer
from shared.logging import get_logger

log = get_logger(__name__)

_JSON_HEADERS = [(b"content-type", b"application/json")]
_SUCCESS_HEADERS = [*_JSON_HEADERS, (b"content-length", str(len(SUCCESS_BODY)).encode())]
_SUCCESS_START = {"type": "http.response.start", "status": 200, "headers": _SUCCESS_HEADERS}
_SUCCESS_BODY = {"type": "http.response.body", "body": SUCCESS_BODY}
_INTERNAL_ERROR = b'{"code":"internal_error","message":"internal error"}'
_STARTING = "the service is starting or stopping; retry"


class IngestApp:
    """FastAPI with the ingest paths served ahead of it. `intake` is set by the lifespan."""

    def __init__(
        self,
        app: FastAPI,
        *,
        paths: Mapping[str, str],
        requests: Counter,
        duration: Histogram,
        retry_after: int,
        buffer: IterationBuffer,
    ) -> None:
        """`paths` maps each ingest path (`/v1/track`) to its kind (`track`)."""
        self.fastapi = app
        self.intake: Intake | None = None
        self._paths = paths
        self._requests = requests
        self._duration = duration
        self._retry_after = retry_after
        self._buffer = buffer
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            kind = self._paths.get(path)
            if kind is not None:
                start = time.perf_counter()
                status = await self._ingest(kind, scope, receive, send)
                self._observe(path, status, time.perf_counter() - start)
                return
        await self.fastapi(scope, receive, send)

    def _observe(self, path: str, status: int, seconds: float) -> None:
        children = self._children.get((path, status))
        if children is None:
            children = self._children[(path, status)] = (
                self._requests.labels(path, "POST", str(status)),
                self._duration.labels(path, "POST"),
            )
        self._buffer.inc(children[0])
        self._buffer.observe(children[1], seconds)

    async def _ingest(self, kind: str, scope: Scope, receive: Receive, send: Send) -> int:
        """Answer one ingest request; returns the status sent."""
        try:
            intake = self.intake
            if intake is None:
                raise Unavailable(_STARTING, self._retry_after)
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
            limit = intake.limits.max_request_bytes
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise too_large(int(declared), limit)
            raw = await _receive_body(receive, limit)
            await intake.ingest(RawRequest(kind, raw, encoding, authorization, query_key))
        except IngestError as exc:
            status, body, extra = error_parts(exc)
            headers = [*_JSON_HEADERS, *((k.encode(), v.encode()) for k, v in extra.items())]
        except Exception as exc:  # as FastAPI's handler of last resort answers it
            log.error("unhandled_error", error=repr(exc), path=scope["path"])
            status, body, headers = 500, _INTERNAL_ERROR, _JSON_HEADERS
        else:
            await send(_SUCCESS_START)
            await send(_SUCCESS_BODY)
            return 200
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return status


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
