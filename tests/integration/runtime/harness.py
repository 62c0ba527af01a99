"""A tiny service on the runtime, for testing the runtime itself: it counts per user."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared import ids
from shared.kafka import create_producer
from shared.runtime import outbox, timers
from shared.runtime.db import create_engine, session_factory
from shared.runtime.errors import PermanentError
from shared.runtime.metrics import RuntimeMetrics
from shared.runtime.runner import ConsumerRunner, Decoded, Message, Record, RunnerSettings
from shared.runtime.schema import RUNTIME_DDL

COUNTER_DDL = (
    "CREATE TABLE IF NOT EXISTS counters"
    " (user_id text PRIMARY KEY, total bigint NOT NULL, applied int NOT NULL)",
    "CREATE TABLE IF NOT EXISTS fired (timer_key text, due_at timestamptz, PRIMARY KEY (timer_key, due_at))",
)


async def create_schema(engine: AsyncEngine) -> None:
    """The runtime's schema and the counters, once per database (revision 2 is not re-runnable:
    it recreates the dedupe table, as a service's migration does exactly once)."""
    async with engine.begin() as conn:
        if (await conn.execute(text("SELECT to_regclass('jobs')"))).scalar() is not None:
            return
        for ddl in (*RUNTIME_DDL, *COUNTER_DDL):
            await conn.execute(text(ddl))


SOURCE = "test.counts.v1"
"""The contract name the counting handler's input ids are scoped by (like `shared.topics.EVENTS`)."""


@dataclass
class CountingHandler:
    """Adds `n` to the user's total.

    `{"poison": true}` raises PermanentError in handle() (dead-lettered); `{"bug": true}` raises a
    KeyError there (a code bug: retried, never dead-lettered); bytes that are not a JSON object
    with an id fail decode() (dead-lettered).
    """

    output_topic: str
    batches: list[int] = field(default_factory=list)
    fixed: bool = False  # "the fix is deployed": poison is counted like any other message

    def decode(self, record: Record) -> Decoded[dict[str, Any]]:
        try:
            data = orjson.loads(record.value)
        except orjson.JSONDecodeError as exc:
            raise PermanentError("undecodable", str(exc)) from exc
        if not isinstance(data, dict) or "id" not in data:
            raise PermanentError("invalid", "missing id")
        return Decoded(data, ids.input_id(SOURCE, str(data.get("user", "")), str(data["id"])))

    async def handle(self, session: AsyncSession, messages: Sequence[Message[dict[str, Any]]]) -> None:
        self.batches.append(len(messages))
        for m in messages:
            if m.value.get("poison") and not self.fixed:
                raise PermanentError("poison", "this message is poison")
            if m.value.get("bug"):
                _ = m.value["no such field"]  # a code bug: KeyError
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
                    id=ids.output_id(m.input_id, "counted"),
                    topic=self.output_topic,
                    key=m.value["user"],
                    value={"id": ids.output_id(m.input_id, "counted"), "input": m.value["id"]},
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
    runner_task: asyncio.Task[None]
    assignments: list[set[TopicPartition]]  # every assignment received, in order (one per rebalance)
    expect_failure: bool = False  # a test that makes run() raise says so; otherwise it is re-raised


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
    **overrides: Any,
) -> AsyncIterator[Service]:
    """A counting service on the runtime; `overrides` are further `RunnerSettings` fields."""
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
            **overrides,
        ),
        handler,
        session_factory(engine),
        producer,
        metrics,
        on_committed=relay.notify,
    )
    assignments: list[set[TopicPartition]] = []
    on_assigned = runner.on_assigned

    def record_assignment(assigned: set[TopicPartition]) -> None:
        assignments.append(set(assigned))
        on_assigned(assigned)

    runner.on_assigned = record_assignment  # type: ignore[method-assign]
    tasks = [asyncio.create_task(runner.run()), asyncio.create_task(relay.run())]
    svc = Service(engine, runner, relay, registry, handler, tasks[0], assignments)
    try:
        yield svc
    finally:
        runner.stop()
        relay.stop()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        await producer.stop()
        await engine.dispose()
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors and not svc.expect_failure:
            raise errors[0]


async def counters(engine: AsyncEngine) -> dict[str, tuple[int, int]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT user_id, total, applied FROM counters"))).all()
    return {r.user_id: (r.total, r.applied) for r in rows}
