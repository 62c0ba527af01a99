"""HTTP pieces every service shares: liveness/readiness probes and admin bearer-token auth."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer


def probes_router(ready: Callable[[], tuple[bool, dict[str, Any]]]) -> APIRouter:
    """`/health` answers while the process lives; `/ready` is 503 while any part is not ready.

    `ready()` returns (ok, details): the details (each part's check, and e.g. the partitions this
    instance owns) are the body of `/ready`, for operators.
    """
    router = APIRouter(tags=["probes"])

    @router.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready")
    def ready_probe() -> JSONResponse:
        ok, parts = ready()
        return JSONResponse({"ready": ok, "checks": parts}, status_code=200 if ok else 503)

    return router


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
