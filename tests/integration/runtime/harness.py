"""A tiny service on the runtime, for testing the runtime itself: it counts per user."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.kafka import create_producer
from shared.runtime import outbox, timers
from shared.runtime.db import create_engine, session_factory
from shared.runtime.errors import PermanentError
from shared.runtime.metrics import RuntimeMetrics
from shared.runtime.runner import ConsumerRunner, Decoded, Message, RunnerSettings
from shared.runtime.schema import RUNTIME_DDL

COUNTER_DDL = (
    "CREATE TABLE IF NOT EXISTS counters"
    " (user_id text PRIMARY KEY, total bigint NOT NULL, applied int NOT NULL)",
    "CREATE TABLE IF NOT EXISTS fired (timer_key text, due_at timestamptz, PRIMARY KEY (timer_key, due_at))",
)


async def create_schema(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for ddl in (*RUNTIME_DDL, *COUNTER_DDL):
            await conn.execute(text(ddl))


@dataclass
class CountingHandler:
    """Adds `n` to the user's total; `{"poison": true}` is a permanent failure."""

    output_topic: str
    batches: list[int] = field(default_factory=list)

    def decode(self, topic: str, key: bytes | None, value: bytes) -> Decoded[dict[str, Any]]:
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise PermanentError("undecodable", str(exc)) from exc
        if not isinstance(data, dict) or "id" not in data:
            raise PermanentError("invalid", "missing id")
        return Decoded(data, str(data["id"]))

    async def handle(self, session: AsyncSession, messages: Sequence[Message[dict[str, Any]]]) -> None:
        self.batches.append(len(messages))
        for m in messages:
            if m.value.get("poison"):
                raise PermanentError("poison", f"message {m.key} is poison")
            await session.execute(
                text(
                    "INSERT INTO counters VALUES (:u, :n, 1) ON CONFLICT (user_id) DO UPDATE "
                    "SET total = counters.total + :n, applied = counters.applied + 1"
                ),
                {"u": m.value["user"], "n": m.value["n"]},
            )
        await outbox.add(
            session,
            [
                outbox.OutboxMessage(
                    id=outbox.output_id(m.key, "counted"),
                    topic=self.output_topic,
                    key=m.value["user"],
                    value={"id": outbox.output_id(m.key, "counted"), "input": m.key},
                )
                for m in messages
            ],
        )


@dataclass
class FiringHandler:
    """Records each fired timer; a second firing of the same timer would violate the primary key."""

    fired: int = 0

    async def on_timers(
        self, session: AsyncSession, due: Sequence[timers.Timer], now: datetime
    ) -> Iterable[timers.Timer]:
        await session.execute(
            text("INSERT INTO fired SELECT * FROM unnest(CAST(:k AS text[]), CAST(:d AS timestamptz[]))"),
            {"k": [t.key for t in due], "d": [t.due_at for t in due]},
        )
        self.fired += len(due)
        return due


@dataclass
class Service:
    engine: AsyncEngine
    runner: ConsumerRunner[dict[str, Any]]
    relay: outbox.OutboxRelay
    registry: CollectorRegistry
    handler: CountingHandler


@contextlib.asynccontextmanager
async def running_service(
    bootstrap: str,
    db_url: str,
    group: str,
    in_topic: str,
    out_topic: str,
    dlq_topic: str,
    max_batch: int = 100,
    lanes: int = 1,
) -> AsyncIterator[Service]:
    engine = create_engine(db_url, pool_size=4)
    await create_schema(engine)
    registry = CollectorRegistry()
    metrics = RuntimeMetrics.create(registry, "test")
    producer = create_producer(bootstrap)
    await producer.start()
    handler = CountingHandler(out_topic)
    relay = outbox.OutboxRelay(engine, producer, metrics, idle_interval=0.1)
    runner = ConsumerRunner(
        RunnerSettings(
            consumer=group,
            topics=[in_topic],
            bootstrap=bootstrap,
            deadletter_topic=dlq_topic,
            max_batch=max_batch,
            poll_timeout_ms=100,
            lanes=lanes,
        ),
        handler,
        session_factory(engine),
        producer,
        metrics,
        on_committed=relay.notify,
    )
    tasks = [asyncio.create_task(runner.run()), asyncio.create_task(relay.run())]
    try:
        yield Service(engine, runner, relay, registry, handler)
    finally:
        runner.stop()
        relay.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        await producer.stop()
        await engine.dispose()


async def counters(engine: AsyncEngine) -> dict[str, tuple[int, int]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT user_id, total, applied FROM counters"))).all()
    return {r.user_id: (r.total, r.applied) for r in rows}
