"""The consumer-service builder: a dead essential task ends the process; stop is orderly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx

from tests.conftest import Stack, eventually, plain_url, unique
from tests.integration.segmenter.harness import SegmenterProcess, segmenter_env

CONFIG = Path(__file__).parents[3] / "config" / "segmenter.yaml"


async def _start(stack: Stack, topics: dict[str, str], database: str, log: Path) -> SegmenterProcess:
    env, port = segmenter_env(
        bootstrap=stack.bootstrap,
        db_url=database,
        topics=topics,
        config=CONFIG,
        group=unique("builder"),
        extra={"USEROPS_LOG_LEVEL": "INFO"},
    )
    proc = SegmenterProcess(env, port, log)
    proc.start()
    await proc.wait_ready()
    return proc


async def test_a_dead_essential_task_ends_the_process_with_exit_code_1(
    stack: Stack, topics: dict[str, str], database: str, tmp_path: Path
) -> None:
    """The outbox relay dies on a non-retryable error (its table is gone): before the builder,
    the process stayed up with /health 200 and published nothing, forever."""
    proc = await _start(stack, topics, database, tmp_path / "segmenter.log")
    try:
        conn = await asyncpg.connect(plain_url(database))
        try:
            await conn.execute("DROP TABLE outbox")
        finally:
            await conn.close()
        assert proc.proc is not None
        code = await eventually(lambda: proc.proc.poll() is not None, timeout=60)  # type: ignore[union-attr]
        assert code
        assert proc.proc.returncode == 1
        log = proc.log.read_text()
        assert "essential task ended" in log
        assert "outbox-relay" in log
    finally:
        proc.kill9()


async def test_sigterm_stops_cleanly_with_exit_code_0(
    stack: Stack, topics: dict[str, str], database: str, tmp_path: Path
) -> None:
    proc = await _start(stack, topics, database, tmp_path / "segmenter.log")
    async with httpx.AsyncClient() as client:
        health = await client.get(f"{proc.url}/health")
        ready = (await client.get(f"{proc.url}/ready")).json()
    assert health.status_code == 200
    assert ready["ready"] is True
    assert ready["checks"]["consumer"] is True
    code = await asyncio.to_thread(proc.terminate)
    assert code in (0, -15), proc.log.read_text()[-2000:]  # uvicorn re-raises SIGTERM once stopped
    assert "service stopped" in proc.log.read_text()


async def test_admin_errors_are_code_and_message(
    stack: Stack, topics: dict[str, str], database: str, tmp_path: Path
) -> None:
    proc = await _start(stack, topics, database, tmp_path / "segmenter.log")
    try:
        async with httpx.AsyncClient(base_url=proc.url) as client:
            unauthorized = await client.get("/v1/users/u1")
            missing = await client.get(
                "/v1/users/nobody", headers={"Authorization": "Bearer test-admin-token"}
            )
            bad_query = await client.get(
                "/v1/users", params={"limit": "many"}, headers={"Authorization": "Bearer test-admin-token"}
            )
        assert unauthorized.status_code == 401
        assert unauthorized.json()["code"] == "unauthorized"
        assert missing.status_code == 404
        assert missing.json() == {"code": "not_found", "message": "no profile for user 'nobody'"}
        assert bad_query.status_code == 400
        assert bad_query.json()["code"] == "invalid_request"
        assert "limit" in bad_query.json()["message"]
    finally:
        proc.kill9()
