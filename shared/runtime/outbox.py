"""Transactional outbox: output events written in the handler's transaction, relayed afterwards.

Output ids are deterministic (`shared.ids.output_id`, the one function that makes them), and
inserting an id twice is a no-op, so a redelivered input or a replay never publishes a second,
different copy. The relay publishes in `seq` order under a transaction-scoped advisory lock, so
with any number of replicas one relay at a time publishes and each user's events keep their order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.kafka import partition_for
from shared.logging import get_logger
from shared.runtime.loop import WorkLoop
from shared.runtime.metrics import RuntimeMetrics

_RELAY_LOCK = 0x7573_6572_6F70  # an arbitrary constant shared by every relay of one database
_BACKLOG_COUNT_EVERY = 5.0  # seconds

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: str
    topic: str
    key: str
    value: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


_INSERT = text(
    """
    INSERT INTO outbox (id, topic, key, value, headers)
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:topics AS text[]), CAST(:keys AS text[]),
                         CAST(:values AS bytea[]), CAST(:headers AS jsonb[]))
    ON CONFLICT (id) DO NOTHING
    """
)


async def add(session: AsyncSession, messages: Sequence[OutboxMessage]) -> None:
    """Queue `messages` for publication when the surrounding transaction commits."""
    if not messages:
        return
    await session.execute(
        _INSERT,
        {
            "ids": [m.id for m in messages],
            "topics": [m.topic for m in messages],
            "keys": [m.key for m in messages],
            "values": [orjson.dumps(m.value) for m in messages],
            "headers": [orjson.dumps({"id": m.id, **m.headers}).decode() for m in messages],
        },
    )


class OutboxRelay(WorkLoop):
    """Publishes committed outbox rows to Kafka, then deletes them. Run with `run()`; wake with `notify()`."""

    def __init__(
        self,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        metrics: RuntimeMetrics,
        *,
        batch_size: int = 1000,
        idle_interval: float = 0.5,
        send_timeout: float = 30.0,
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._metrics = metrics
        self._batch_size = batch_size
        self._idle_interval = idle_interval
        self._send_timeout = send_timeout
        self._next_backlog_count = 0.0
        super().__init__("outbox relay", drain_on_stop=True)

    async def _publish(self, rows: Sequence[Any]) -> None:
        """Send `rows` (in `seq` order) and wait until Kafka acknowledged every one.

        Rows are packed into one record batch per partition (the partition Kafka's default
        partitioner gives the key), which keeps each key's order and costs far less per record
        than one `send()` each.
        """
        producer = self._producer
        counts: dict[str, int] = {}
        open_batches: dict[tuple[str, int], Any] = {}
        futures = []
        for r in rows:
            topic = r.topic
            n = counts.get(topic)
            if n is None:
                n = counts[topic] = len(await producer.partitions_for(topic))
            key = r.key.encode()
            value = bytes(r.value)
            headers = [(k, str(v).encode()) for k, v in r.headers.items()]
            slot = (topic, partition_for(key, n))
            batch = open_batches.get(slot)
            if batch is None:
                batch = open_batches[slot] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                # Full: send it and start the next one (a record too large for an empty batch
                # goes alone through send(), which raises the broker's error for it).
                futures.append(await producer.send_batch(batch, topic, partition=slot[1]))
                batch = open_batches[slot] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    del open_batches[slot]
                    futures.append(
                        await producer.send(topic, value=value, key=key, partition=slot[1], headers=headers)
                    )
        for (topic, partition), batch in open_batches.items():
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)

    async def run(self) -> None:
        """Relay until stopped; a stop drains what is committed first."""

        async def idle() -> float:
            return self._idle_interval

        await self.loop(self.relay_once, idle)

    async def relay_once(self) -> int:
        """Publish one batch; return how many rows were published (0 when idle or not the leader)."""
        async with self._engine.begin() as conn:
            leader = (
                await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _RELAY_LOCK})
            ).scalar()
            if not leader:
                return 0
            rows = (
                await conn.execute(
                    text("SELECT seq, topic, key, value, headers FROM outbox ORDER BY seq LIMIT :n"),
                    {"n": self._batch_size},
                )
            ).all()
            if rows:
                await asyncio.wait_for(self._publish(rows), self._send_timeout)
                await conn.execute(
                    text("DELETE FROM outbox WHERE seq = ANY(:seqs)"), {"seqs": [r.seq for r in rows]}
                )
                if len(rows) < self._batch_size:
                    self._metrics.outbox_backlog.set(0)
                elif time.monotonic() >= self._next_backlog_count:
                    # Counting a large backlog costs a scan: at most every few seconds.
                    self._next_backlog_count = time.monotonic() + _BACKLOG_COUNT_EVERY
                    count = await conn.execute(text("SELECT count(*) FROM outbox"))
                    self._metrics.outbox_backlog.set(int(count.scalar_one()))  # after the delete
            else:
                self._metrics.outbox_backlog.set(0)
            return len(rows)
