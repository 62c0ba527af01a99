"""The local stack really runs: a produced message is read back, and PostgreSQL answers."""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]
from aiokafka import AIOKafkaConsumer

from shared.kafka import create_producer
from tests.conftest import Stack


async def test_kafka_round_trip_with_acks_all(stack: Stack, topics: dict[str, str]) -> None:
    topic = topics["userops.events.v1"]
    producer = create_producer(stack.bootstrap)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, b"hello", key=b"u1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        from aiokafka import TopicPartition

        tp = TopicPartition(topic, meta.partition)
        consumer.assign([tp])
        batch = await consumer.getmany(tp, timeout_ms=10_000)
        assert [m.value for m in batch[tp]] == [b"hello"]
        assert batch[tp][0].key == b"u1"
    finally:
        await consumer.stop()


async def test_postgres_creates_service_databases(stack: Stack) -> None:
    stack.postgres.ensure_databases()
    stack.postgres.ensure_databases()  # idempotent
    conn = await asyncpg.connect(stack.postgres.url())
    try:
        names = {r["datname"] for r in await conn.fetch("select datname from pg_database")}
    finally:
        await conn.close()
    assert {"segmenter", "rewards", "notifier"} <= names
