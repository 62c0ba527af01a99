"""The builder's probes: a process whose essential part died never looks alive or ready."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from shared.http import probes_router
from shared.runtime.service import Parts


def _client(parts: Parts) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(probes_router(parts.ready, alive=parts.alive))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_health_turns_503_once_an_essential_task_died() -> None:
    parts = Parts()
    async with _client(parts) as client:
        assert (await client.get("/health")).status_code == 200
        parts.failed = "outbox-relay"
        health = await client.get("/health")
        ready = await client.get("/ready")
    assert health.status_code == 503
    assert health.json() == {"status": "failed"}
    assert ready.status_code == 503
    assert ready.json()["checks"]["failed_task"] == "outbox-relay"


async def test_ready_is_503_before_anything_started() -> None:
    async with _client(Parts()) as client:
        ready = await client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["consumer"] is False
