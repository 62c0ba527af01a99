"""FastAPI's and Starlette's own refusals speak `{"code", "message"}` too (api.py)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from services.ingest.api import install_error_handlers
from services.ingest.domain.errors import RateLimited


class Body(BaseModel):
    n: int


def client() -> httpx.AsyncClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/typed")
    async def typed(body: Body) -> dict[str, int]:
        return {"n": body.n}

    @app.post("/limited")
    async def limited() -> None:
        raise RateLimited("slow down", 7)

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_malformed_json_on_a_validated_route_is_a_400_with_code_and_message() -> None:
    async with client() as c:
        response = await c.post("/typed", content=b'{"n": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"code", "message"}
    assert body["code"] == "invalid_request"
    assert "json" in body["message"].lower()


async def test_a_schema_violation_names_the_field() -> None:
    async with client() as c:
        response = await c.post("/typed", json={"n": "many"})
    assert response.status_code == 400
    assert response.json()["message"].startswith("body.n: ")


async def test_ingest_errors_carry_retry_after() -> None:
    async with client() as c:
        response = await c.post("/limited")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json() == {"code": "rate_limited", "message": "slow down"}


async def test_unknown_paths_and_wrong_methods() -> None:
    async with client() as c:
        unknown = await c.get("/nope")
        wrong = await c.get("/typed")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
    assert (wrong.status_code, wrong.json()["code"]) == (405, "method_not_allowed")
