"""NUL (U+0000) in a request to a consumer service's API is a 400 naming where, never a 500.

PostgreSQL cannot bind a text parameter holding NUL, so before this check `GET /v1/users/%00`
on the segmenter or rewards, `?after=%00`, or an adjustment whose `reason` held `\\u0000`
reached the database and came back as `500 internal_error`.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import Body, FastAPI

from shared.http import install_json_errors


def _client() -> httpx.AsyncClient:
    app = FastAPI()
    install_json_errors(app)

    @app.get("/v1/users/{user_id}")
    async def get_user(user_id: str, after: str = "") -> dict[str, str]:
        return {"userId": user_id, "after": after}

    @app.post("/v1/users/{user_id}/adjustments")
    async def adjust(user_id: str, body: dict[str, Any] = Body()) -> dict[str, Any]:
        return body

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_nul_in_the_path_is_a_400_naming_the_path() -> None:
    async with _client() as client:
        answer = await client.get("/v1/users/a%00b")
    assert answer.status_code == 400
    assert answer.json() == {"code": "invalid_request", "message": "path: must not contain NUL (U+0000)"}


async def test_nul_in_a_query_parameter_is_a_400_naming_it() -> None:
    async with _client() as client:
        answer = await client.get("/v1/users/u1", params={"after": "x\x00"})
    assert answer.status_code == 400
    assert answer.json()["message"] == "query.after: must not contain NUL (U+0000)"


async def test_nul_in_a_json_body_is_a_400_naming_the_field() -> None:
    async with _client() as client:
        answer = await client.post("/v1/users/u1/adjustments", json={"points": 5, "notes": ["ok", "x\x00"]})
        key = await client.post("/v1/users/u1/adjustments", json={"points": 5, "k\x00": 1})
    assert answer.status_code == 400
    assert answer.json()["message"] == "body.notes.1: must not contain NUL (U+0000)"
    assert key.status_code == 400
    assert key.json()["message"] == "body: must not contain NUL (U+0000)"


async def test_requests_without_nul_reach_the_route_with_their_body_intact() -> None:
    escaped = {"reason": "a literal \\u0000 is six characters", "points": 5}
    async with _client() as client:
        got = await client.get("/v1/users/u%2F1", params={"after": "b"})
        posted = await client.post("/v1/users/u1/adjustments", json=escaped)
        malformed = await client.post(
            "/v1/users/u1/adjustments",
            content=b'{"x": "\\u0000',
            headers={"content-type": "application/json"},
        )
    assert got.status_code == 404  # an encoded '/' is not routed: it is not refused as NUL either
    assert posted.status_code == 200
    assert posted.json() == escaped
    assert malformed.status_code == 400
    assert "NUL" not in malformed.json()["message"]
