"""The "unhandled error" log names the route template and the method, never the raw path (user ids)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from structlog.testing import capture_logs

from shared.http import install_json_errors

USER_ID = "user-7f3a9c"


def _app() -> FastAPI:
    app = FastAPI()
    install_json_errors(app)

    @app.get("/v1/users/{user_id}")
    async def get_user(user_id: str) -> dict[str, str]:
        raise RuntimeError("boom")

    return app


async def test_a_user_id_in_the_path_does_not_reach_the_log() -> None:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with capture_logs() as logs:
            answer = await client.get(f"/v1/users/{USER_ID}")
    assert answer.status_code == 500
    assert answer.json() == {"code": "internal_error", "message": "internal error"}
    [entry] = [e for e in logs if e["event"] == "unhandled error"]
    assert entry["route"] == "/v1/users/{user_id}"
    assert entry["method"] == "GET"
    assert USER_ID not in repr(logs)
