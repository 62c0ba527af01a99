"""HTTP pieces every service shares: probes, `{"code", "message"}` errors, admin bearer-token auth."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.logging import get_logger

log = get_logger(__name__)

_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "unprocessable",
    429: "rate_limited",
    503: "unavailable",
}


def probes_router(
    ready: Callable[[], tuple[bool, dict[str, Any]]], alive: Callable[[], bool] = lambda: True
) -> APIRouter:
    """`/health` answers 200 while the process is alive and whole (503 once an essential part died
    and the process is on its way out); `/ready` is 503 while any part is not ready.

    `ready()` returns (ok, details): the details (each part's check, and e.g. the partitions this
    instance owns) are the body of `/ready`, for operators.
    """
    router = APIRouter(tags=["probes"])

    @router.get("/health")
    def health() -> JSONResponse:
        ok = alive()
        return JSONResponse({"status": "ok" if ok else "failed"}, status_code=200 if ok else 503)

    @router.get("/ready")
    def ready_probe() -> JSONResponse:
        ok, parts = ready()
        return JSONResponse({"ready": ok, "checks": parts}, status_code=200 if ok else 503)

    return router


def error_body(status_code: int, detail: Any) -> dict[str, str]:
    """`{"code", "message"}` from an HTTPException's detail (a dict with both, or a message)."""
    if isinstance(detail, dict) and "code" in detail and "message" in detail:
        return {"code": str(detail["code"]), "message": str(detail["message"])}
    return {"code": _CODES.get(status_code, "http_error"), "message": str(detail)}


def route_template(request: Request) -> str:
    """The path template of the route that matched `request` (`/v1/users/{user_id}`), or
    "(unmatched)": never the request's own path, which may carry user ids."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) else "(unmatched)"


def install_json_errors(app: FastAPI) -> None:
    """Every error of `app`, FastAPI's and Starlette's own included, as `{"code", "message"}`."""

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse(
            error_body(exc.status_code, exc.detail),
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
        )

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
            for err in exc.errors()
        )
        return JSONResponse(
            {"code": "invalid_request", "message": problems or "invalid request"}, status_code=400
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The route template (`/v1/users/{user_id}`), never the raw path: paths carry user ids.
        log.error(
            "unhandled error", error=repr(exc)[:500], method=request.method, route=route_template(request)
        )
        return JSONResponse({"code": "internal_error", "message": "internal error"}, status_code=500)

    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)
    app.add_middleware(RefuseNul)


def _nul_in_json(value: Any, where: str) -> str | None:
    """The dotted path of the first string or key in `value` holding NUL, else None."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    items: Any = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return where
        found = _nul_in_json(item, f"{where}.{key}")
        if found is not None:
            return found
    return None


class RefuseNul:
    """A request whose path, query or JSON body carries NUL (U+0000) is a 400 naming where.

    PostgreSQL cannot store or even compare a text value holding NUL: without this, an id such
    as `/v1/users/%00` reached the database and came back as a 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        where = "path" if "\x00" in scope["path"] else None
        if where is None and b"%00" in scope.get("query_string", b""):
            query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            where = next((f"query.{k}" for k, v in query if "\x00" in k + v), None)
        if where is None and scope["method"] in ("POST", "PUT", "PATCH"):
            body, receive = await _buffered(receive)
            if b"\\u0000" in body:
                try:
                    where = _nul_in_json(orjson.loads(body), "body")
                except orjson.JSONDecodeError:
                    where = None  # FastAPI answers malformed JSON itself
        if where is None:
            await self.app(scope, receive, send)
            return
        answer = JSONResponse(
            {"code": "invalid_request", "message": f"{where}: must not contain NUL (U+0000)"}, status_code=400
        )
        await answer(scope, receive, send)


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a `receive` that hands it to the app again."""
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


_bearer = HTTPBearer(auto_error=False)


def admin_auth(token: str) -> Callable[..., None]:
    """A dependency that accepts only `Authorization: Bearer <token>` (compared in constant time)."""
    expected = token.encode()

    def check(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected):
            raise HTTPException(
                status_code=status.HTTP_401_UNAUTHORIZED,
                detail={"code": "unauthorized", "message": "a valid admin bearer token is required"},
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check
