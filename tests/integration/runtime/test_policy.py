"""The dead-letter policy on a real broker and PostgreSQL (DESIGN.md §3.3), and lag per partition."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import ids
from shared.kafka import create_producer
from shared.runtime import deadletter
from shared.runtime.db import create_engine
from shared.runtime.errors import ConsumerFailed, is_retryable
from tests.conftest import Stack, eventually, unique
from tests.integration.runtime.harness import SOURCE, counters, running_service
from tests.integration.runtime.test_runner import DLQ, EVENTS, OUT, produce, read_all


async def _eq(coro: object, expected: object) -> bool:
    return bool(await coro == expected)  # type: ignore[misc]


async def test_a_dead_letter_keeps_the_record_and_its_id_stays_unclaimed_for_a_replay(
    stack: Stack, topics: dict[str, str], database: str
) -> None:
    poison = orjson.dumps({"id": "p-1", "user": "u1", "n": 7, "poison": True})
    producer = create_producer(stack.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topics[EVENTS], poison, key=b"u1", headers=[("traceparent", b"00-abc")])
        await producer.send_and_wait(
            topics[EVENTS], orjson.dumps({"id": "m-1", "user": "u1", "n": 1}), key=b"u1"
        )
    finally:
        await producer.stop()
    async with running_service(
        stack.bootstrap, database, unique("g"), topics[EVENTS], topics[OUT], topics[DLQ]
    ) as svc:
        await eventually(lambda: _eq(counters(svc.engine), {"u1": (1, 1)}))
        (dead,) = await read_all(stack.bootstrap, topics[DLQ], expect=1)
        headers = dict(dead.headers)
        assert (dead.key, dead.value) == (b"u1", poison)
        assert headers["traceparent"] == b"00-abc"
        assert headers[deadletter.REASON] == b"poison"
        at = datetime.fromisoformat(headers[deadletter.DEAD_LETTERED_AT].decode())
        assert at.utcoffset() is not None
        assert abs((datetime.now(UTC) - at).total_seconds()) < 60
        async with svc.engine.connect() as conn:
            claimed = (
                await conn.execute(
                    text("SELECT count(*) FROM processed_messages WHERE key_hash = :h"),
                    {"h": ids.dedupe_hash(ids.input_id(SOURCE, "u1", "p-1"))},
                )
            ).scalar_one()
        assert claimed == 0
        # The fix is deployed; the dead letter is replayed to the source with its key and headers.
        svc.handler.fixed = True
        producer = create_producer(stack.bootstrap)
        await producer.start()
        try:
            original = [(k, v) for k, v in dead.headers if k not in deadletter.HEADERS]
            await producer.send_and_wait(topics[EVENTS], dead.value, key=dead.key, headers=original)
        finally:
            await producer.stop()
        await eventually(lambda: _eq(counters(svc.engine), {"u1": (8, 2)}))


async def test_a_code_bug_is_retried_never_dead_lettered_and_ends_the_consumer(
    stack: Stack, topics: dict[str, str], database: str
) -> None:
    await produce(
        stack.bootstrap,
        topics[EVENTS],
        [{"id": "m-1", "user": "u1", "n": 1}, {"id": "m-2", "user": "u1", "n": 1, "bug": True}],
    )
    async with running_service(
        stack.bootstrap,
        database,
        unique("g"),
        topics[EVENTS],
        topics[OUT],
        topics[DLQ],
        max_unexpected_failures=3,
        retry_max_seconds=0.2,
    ) as svc:
        svc.expect_failure = True
        with pytest.raises(ConsumerFailed, match="KeyError"):
            await asyncio.wait_for(asyncio.shield(svc.runner_task), 30)
        assert not svc.runner.ready
        assert svc.handler.batches == [2, 2, 2, 2]  # the first try and three retries, never isolated
        assert await counters(svc.engine) == {}  # the batch was never half applied
    assert await read_all(stack.bootstrap, topics[DLQ], expect=0, timeout=1) == []


def _lags(registry: CollectorRegistry) -> dict[str, float]:
    return {
        s.labels["partition"]: s.value
        for m in registry.collect()
        if m.name == "userops_consumer_lag"
        for s in m.samples
    }


async def test_lag_is_reported_for_every_assigned_partition_with_lanes(
    stack: Stack, topics: dict[str, str], database: str
) -> None:
    producer = create_producer(stack.bootstrap)
    await producer.start()
    try:  # partition 0 only: 1 and 2 have never had a message, nor a committed offset
        for i in range(20):
            value = orjson.dumps({"id": f"m-{i}", "user": "u1", "n": 1})
            await producer.send_and_wait(topics[EVENTS], value, key=b"u1", partition=0)
    finally:
        await producer.stop()
    async with running_service(
        stack.bootstrap, database, unique("g"), topics[EVENTS], topics[OUT], topics[DLQ], lanes=2
    ) as svc:
        await eventually(lambda: _eq(counters(svc.engine), {"u1": (20, 20)}))
        await eventually(lambda: _lags(svc.registry) == {"0": 0.0, "1": 0.0, "2": 0.0})


async def _in_transaction(engine: AsyncEngine, *statements: str) -> None:
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))


@pytest.mark.parametrize(
    ("setup", "statement", "sqlstate"),
    [
        ("SET TRANSACTION READ ONLY", "CREATE TABLE t_ro (x int)", "25006"),
        ("SET LOCAL statement_timeout = '50ms'", "SELECT pg_sleep(2)", "57014"),
        ("SET LOCAL lock_timeout = '50ms'", "LOCK TABLE locked IN ACCESS EXCLUSIVE MODE", "55P03"),
    ],
)
async def test_failover_cancel_and_lock_timeout_errors_are_retryable(
    database: str, setup: str, statement: str, sqlstate: str
) -> None:
    engine = create_engine(database, pool_size=2)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE locked (x int)"))
        async with engine.connect() as holder:
            await holder.execute(text("LOCK TABLE locked IN ACCESS EXCLUSIVE MODE"))  # held until closed
            with pytest.raises(DBAPIError) as caught:
                await _in_transaction(engine, setup, statement)
            await holder.rollback()
    finally:
        await engine.dispose()
    assert getattr(caught.value.orig, "sqlstate", None) == sqlstate
    assert is_retryable(caught.value)


async def test_a_database_closed_to_connections_for_maintenance_is_retryable(database: str) -> None:
    """`ALTER DATABASE ... ALLOW_CONNECTIONS false` refuses new sessions with SQLSTATE 55000: an
    outage to wait out, not a fault that should end the service."""
    name = make_url(database).database
    admin = create_engine(str(make_url(database).set(database="postgres")), pool_size=1)
    engine = create_engine(database, pool_size=1)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            await conn.commit()
        try:
            with pytest.raises(DBAPIError) as caught:
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
                await conn.commit()
    finally:
        await engine.dispose()
        await admin.dispose()
    assert getattr(caught.value.orig, "sqlstate", None) == "55000"
    assert is_retryable(caught.value)
