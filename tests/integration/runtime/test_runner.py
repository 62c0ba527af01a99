"""The consumer runtime on a real broker and a real PostgreSQL: exactly-once effects."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from scripts.stack import PostgresNode
from scripts.stack.procs import free_port
from shared.kafka import create_producer
from shared.runtime import timers
from shared.runtime.db import create_engine, session_factory
from shared.runtime.metrics import RuntimeMetrics
from tests.conftest import Stack, eventually, unique
from tests.integration.runtime.harness import FiringHandler, counters, create_schema, running_service

EVENTS, OUT, DLQ = "userops.events.v1", "userops.lifecycle.v1", "userops.deadletter.v1"


async def produce(bootstrap: str, topic: str, values: Sequence[Any]) -> None:
    producer = create_producer(bootstrap)
    await producer.start()
    try:
        for v in values:
            raw = v if isinstance(v, bytes) else orjson.dumps(v)
            key = (v.get("user", "x") if isinstance(v, dict) else "x").encode()
            await producer.send(topic, raw, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str, expect: int, timeout: float = 20) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    out: list[Any] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(out) < expect and loop.time() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(records)
        # Linger briefly to catch extra (duplicate) records beyond the expected count.
        for records in (await consumer.getmany(timeout_ms=500)).values():
            out.extend(records)
    finally:
        await consumer.stop()
    return out


def msgs(users: int, per_user: int, prefix: str = "m") -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}-{u}-{i}", "user": f"u{u}", "n": i + 1}
        for u in range(users)
        for i in range(per_user)
    ]


async def test_each_message_applied_once_even_when_redelivered(
    stack: Stack, topics: dict[str, str], database: str
) -> None:
    values = msgs(20, 10)
    duplicates = values[:30]  # an SDK retry: same ids again
    await produce(stack.bootstrap, topics[EVENTS], values + duplicates)
    group = unique("g")
    expected = {f"u{u}": (sum(range(1, 11)), 10) for u in range(20)}
    async with running_service(
        stack.bootstrap, database, group, topics[EVENTS], topics[OUT], topics[DLQ]
    ) as svc:
        await eventually(lambda: _eq(counters(svc.engine), expected))
        assert svc.runner.ready
    # Rewind the group's offsets to 0: every message is delivered again.
    rewind = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=group, enable_auto_commit=False)
    await rewind.start()
    try:
        parts = [TopicPartition(topics[EVENTS], p) for p in range(3)]
        rewind.assign(parts)
        await rewind.commit(dict.fromkeys(parts, 0))
    finally:
        await rewind.stop()
    async with running_service(
        stack.bootstrap, database, group, topics[EVENTS], topics[OUT], topics[DLQ]
    ) as svc:
        await eventually(lambda: _lag_zero(svc.registry))
        assert await counters(svc.engine) == expected
    outputs = await read_all(stack.bootstrap, topics[OUT], expect=200)
    ids = [orjson.loads(r.value)["id"] for r in outputs]
    assert len(ids) == 200
    assert len(set(ids)) == 200


async def test_lanes_apply_each_partition_once_and_in_order(
    stack: Stack, topics: dict[str, str], database: str
) -> None:
    values = msgs(30, 12)
    await produce(stack.bootstrap, topics[EVENTS], values)
    expected = {f"u{u}": (sum(range(1, 13)), 12) for u in range(30)}
    async with running_service(
        stack.bootstrap,
        database,
        unique("g"),
        topics[EVENTS],
        topics[OUT],
        topics[DLQ],
        max_batch=20,
        lanes=2,
    ) as svc:
        await eventually(lambda: _eq(counters(svc.engine), expected))
        await eventually(lambda: _lag_zero(svc.registry))
    outputs = await read_all(stack.bootstrap, topics[OUT], expect=len(values))
    assert len(outputs) == len(values)
    # Each output names its input; per user they must come out in the order the inputs went in.
    seen: dict[str, list[int]] = {}
    for r in outputs:
        _, user, i = orjson.loads(r.value)["input"].split("-")
        seen.setdefault(user, []).append(int(i))
    assert seen == {str(u): list(range(12)) for u in range(30)}


async def _eq(coro: Any, expected: Any) -> bool:
    return bool(await coro == expected)


def _lag_zero(registry: CollectorRegistry) -> bool:
    samples = [s for m in registry.collect() if m.name == "userops_consumer_lag" for s in m.samples]
    return len(samples) == 3 and all(s.value == 0 for s in samples)


async def test_poison_message_is_dead_lettered_and_processing_continues(
    stack: Stack, topics: dict[str, str], database: str
) -> None:
    good = msgs(5, 4)
    values: list[Any] = [
        *good[:10],
        {"id": "bad", "user": "u1", "n": 1, "poison": True},
        b"{not json",
        *good[10:],
    ]
    await produce(stack.bootstrap, topics[EVENTS], values)
    group = unique("g")
    async with running_service(
        stack.bootstrap, database, group, topics[EVENTS], topics[OUT], topics[DLQ]
    ) as svc:
        await eventually(lambda: _eq(counters(svc.engine), {f"u{u}": (10, 4) for u in range(5)}))
        dead = await read_all(stack.bootstrap, topics[DLQ], expect=2)
        assert sorted(r.value for r in dead) == sorted([orjson.dumps(values[10]), b"{not json"])
        headers = {r.value: dict(r.headers) for r in dead}
        h = headers[b"{not json"]
        assert h["source_topic"] == topics[EVENTS].encode()
        assert h["consumer"] == group.encode()
        assert h["reason"] == b"undecodable"
        assert {"source_partition", "source_offset", "error", "dead_lettered_at"} <= h.keys()
        assert headers[orjson.dumps(values[10])]["reason"] == b"poison"
        dl = {
            s.labels["reason"]: s.value
            for m in svc.registry.collect()
            if m.name == "userops_consumer_messages_deadlettered"
            for s in m.samples
            if s.name.endswith("_total")
        }
        assert dl == {"undecodable": 1.0, "poison": 1.0}


async def test_database_outage_is_retried_never_skipped(
    stack: Stack, topics: dict[str, str], tmp_path: Path
) -> None:
    pg = PostgresNode(home=tmp_path / "pg", port=free_port(), fsync=False)
    pg.start()
    pg.ensure_databases(("svc",))
    group = unique("g")
    try:
        async with running_service(
            stack.bootstrap, pg.async_url("svc"), group, topics[EVENTS], topics[OUT], topics[DLQ]
        ) as svc:
            await produce(stack.bootstrap, topics[EVENTS], msgs(3, 5, "a"))
            await eventually(lambda: _eq(counters(svc.engine), {f"u{u}": (15, 5) for u in range(3)}))
            pg.stop(mode="immediate")
            await produce(stack.bootstrap, topics[EVENTS], msgs(3, 5, "b"))
            await eventually(lambda: not svc.runner.ready, timeout=20)
            pg.start()
            await eventually(lambda: svc.runner.ready, timeout=30)
            await eventually(lambda: _eq(counters(svc.engine), {f"u{u}": (30, 10) for u in range(3)}))
    finally:
        pg.stop(mode="immediate")


async def test_two_timer_workers_fire_each_timer_once(stack: Stack, database: str) -> None:
    from datetime import UTC, datetime, timedelta

    engine = create_engine(database, pool_size=4)
    await create_schema(engine)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    async with sessions() as s, s.begin():
        await timers.schedule(
            s, [timers.Timer("idle", f"u{i}", now - timedelta(seconds=i % 7)) for i in range(2000)]
        )
        await timers.schedule(s, [timers.Timer("idle", "later", now + timedelta(hours=1))])
    metrics = RuntimeMetrics.create(CollectorRegistry(), "test")
    handlers = [FiringHandler(), FiringHandler()]
    workers = [timers.TimerWorker(sessions, h, ["idle"], metrics, "test", batch_size=100) for h in handlers]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        await eventually(lambda: sum(h.fired for h in handlers) >= 2000)
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)
    async with engine.connect() as conn:
        fired = (await conn.execute(text("SELECT count(*) FROM fired"))).scalar_one()
        left = (await conn.execute(text("SELECT key FROM timers"))).scalars().all()
    await engine.dispose()
    assert fired == 2000
    assert sum(h.fired for h in handlers) == 2000
    assert all(h.fired > 0 for h in handlers), "both workers should share the work"
    assert left == ["later"]


async def test_dedupe_keys_older_than_retention_are_purged(database: str) -> None:
    from datetime import UTC, datetime, timedelta

    from shared.ids import dedupe_hash
    from shared.runtime import dedupe

    engine = create_engine(database, pool_size=2)
    await create_schema(engine)
    sessions = session_factory(engine)
    async with sessions() as s, s.begin():
        assert await dedupe.claim(s, "c", ["old", "new"]) == {"old", "new"}
        assert await dedupe.claim(s, "other", ["old"]) == {"old"}
        await s.execute(
            text(
                "UPDATE processed_messages SET processed_at = now() - interval '8 days' WHERE key_hash = :h"
            ),
            {"h": dedupe_hash("old")},
        )
    async with sessions() as s, s.begin():
        removed = await dedupe.purge(s, "c", datetime.now(UTC) - timedelta(days=7))
    async with sessions() as s, s.begin():
        # A purged key can be claimed again; a kept one is still a duplicate; another consumer's
        # keys are its own business.
        again = await dedupe.claim(s, "c", ["old", "new"])
        others = await dedupe.claim(s, "other", ["old"])
    await engine.dispose()
    assert removed == 1
    assert again == {"old"}
    assert others == set()
