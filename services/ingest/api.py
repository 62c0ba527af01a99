"""HTTP routes: Segment's `POST /v1/{type}` plus `/health` and `/ready`.

Thin: read the body (bounded), hand it to `Intake`, translate its errors into statuses. Every
error body is `{"code", "message"}`; 429 and 503 carry `Retry-After`. Success is exactly
`200 {"success": true}`, sent only after Kafka acknowledged every event.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.ingest.domain.body import too_large
from services.ingest.domain.envelope import KINDS
from services.ingest.domain.errors import IngestError, RetryableError
from services.ingest.intake import Intake, RawRequest
from services.ingest.schemas import REQUEST_MODELS, ErrorBody, Success
from shared.logging import get_logger

log = get_logger(__name__)

SUCCESS_BODY = b'{"success":true}'
JSON = "application/json"

STATUS: dict[str, int] = {
    "invalid_request": 400,
    "unauthorized": 401,
    "payload_too_large": 413,
    "rate_limited": 429,
    "unavailable": 503,
}

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed body or event (names field and index)."},
    401: {"model": ErrorBody, "description": "Missing, unknown or disabled write key."},
    413: {"model": ErrorBody, "description": "Event, request or batch over its size limit."},
    429: {"model": ErrorBody, "description": "Rate limit of the write key; see Retry-After."},
    503: {"model": ErrorBody, "description": "Kafka cannot take events now; see Retry-After."},
}


def error_parts(exc: IngestError) -> tuple[int, bytes, dict[str, str]]:
    """Status, JSON body and headers of a refusal."""
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RetryableError) else {}
    body = orjson.dumps({"code": exc.code, "message": exc.message})
    return STATUS.get(exc.code, 400), body, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps({"code": code, "message": message})
    return Response(body, status_code=status, media_type=JSON, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(size, limit)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _ingest_endpoint(kind: str) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    async def ingest(request: Request) -> Response:
        intake: Intake = request.app.state.intake
        headers = request.headers
        body = await read_body(request, intake.limits.max_request_bytes)
        await intake.ingest(
            RawRequest(
                kind=kind,
                body=body,
                content_encoding=headers.get("content-encoding"),
                authorization=headers.get("authorization"),
                query_write_key=(
                    request.query_params.get("writeKey") if request.scope["query_string"] else None
                ),
            )
        )
        return Response(SUCCESS_BODY, media_type=JSON)

    ingest.__name__ = f"ingest_{kind}"
    return ingest


def _openapi_extra(kind: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{_model_name(kind)}"}}},
        },
        "parameters": [
            {
                "name": "writeKey",
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "The write key, if neither HTTP Basic nor the body carries it.",
            },
        ],
        "security": [{"writeKeyBasic": []}, {}],
    }


def _model_name(kind: str) -> str:
    return REQUEST_MODELS[kind].__name__


def ingest_path(kind: str) -> str:
    return f"/v1/{kind}"


def ingest_router() -> APIRouter:
    router = APIRouter(tags=["ingest"])
    for kind in KINDS:
        router.add_api_route(
            ingest_path(kind),
            _ingest_endpoint(kind),
            methods=["POST"],
            summary=f"Send {'a batch of events' if kind == 'batch' else f'a {kind} call'}",
            response_model=Success,
            responses=_ERROR_RESPONSES,
            openapi_extra=_openapi_extra(kind),
        )
    return router


def health_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/health", summary="Liveness: the process answers")
    async def health() -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    @router.get(
        "/ready",
        summary="Readiness: Kafka can take events",
        responses={503: {"model": ErrorBody, "description": "Kafka is unreachable."}},
    )
    async def ready(request: Request) -> Response:
        if request.app.state.publisher.available:
            return Response(b'{"status":"ready"}', media_type=JSON)
        return error_response(
            503, "unavailable", "Kafka is unreachable", {"Retry-After": str(_retry_after(request))}
        )

    return router


def _retry_after(request: Request) -> int:
    value: int = request.app.state.settings.ingest_unavailable_retry_after_seconds
    return value


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal, including FastAPI's and Starlette's own, as `{"code", "message"}`."""

    async def on_ingest_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, IngestError)
        status, body, headers = error_parts(exc)
        return Response(body, status_code=status, media_type=JSON, headers=headers)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
            for err in exc.errors()
        )
        return error_response(400, "invalid_request", problems or "invalid request")

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled_error", error=repr(exc), path=request.url.path)
        return error_response(500, "internal_error", "internal error")

    app.add_exception_handler(IngestError, on_ingest_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
