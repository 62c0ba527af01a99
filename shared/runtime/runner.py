"""The consumer runner: Kafka in, one PostgreSQL transaction per batch, offsets after commit.

For each polled batch the runner
1. decodes every record with the handler (`PermanentError` → dead-letter topic),
2. opens ONE transaction that claims the batch's dedupe keys and hands the new messages to the
   handler, which writes its effects and outbox rows in that same transaction,
3. commits it, wakes the outbox relay, and only then commits the Kafka offsets (offset + 1).

A transient failure (database or broker down) retries the same batch with backoff and never skips;
`ready` is False meanwhile. Any other failure re-runs the batch one message per transaction to find
the poison message, which goes to the dead-letter topic, so one bad message never blocks the rest.
A rebalance waits for the in-flight batch to commit; `stop()` finishes it, commits, and returns.

With `lanes` > 1 that many batches are in flight at once, each from its own fixed share of the
partitions (partition number modulo `lanes`), so one batch's database round trips overlap another's
decoding and domain work; each partition is still processed in order by one lane, as if by
`lanes` consumers of one group.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.logging import get_logger
from shared.runtime import dedupe
from shared.runtime.errors import Backoff, PermanentError, is_retryable
from shared.runtime.metrics import RuntimeMetrics
from shared.topics import DEADLETTER

T = TypeVar("T")
log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Decoded(Generic[T]):
    """What a handler makes of one record: the value, its dedupe key, and when ingest received it."""

    value: T
    key: str
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Message(Generic[T]):
    topic: str
    partition: int
    offset: int
    value: T
    key: str
    received_at: datetime | None


class Handler(Protocol[T]):
    """A service's side of the runner. It must not commit; the runner owns the transaction."""

    def decode(self, topic: str, key: bytes | None, value: bytes) -> Decoded[T]:
        """Parse one record, or raise PermanentError."""
        ...

    async def handle(self, session: AsyncSession, messages: Sequence[Message[T]]) -> None:
        """Apply `messages` (new ones only, in partition order) inside the open transaction."""
        ...


@dataclass(frozen=True)
class RunnerSettings:
    consumer: str  # the consumer group, also the dedupe scope and the metrics label
    topics: Sequence[str]
    bootstrap: str
    deadletter_topic: str = DEADLETTER
    max_batch: int = 500
    poll_timeout_ms: int = 500
    dedupe_retention: timedelta = timedelta(days=7)
    dedupe_purge_every: timedelta = timedelta(minutes=10)
    session_timeout_ms: int = 30_000
    max_poll_interval_ms: int = 300_000
    lanes: int = 1  # batches in flight at once, each from partitions p with p % lanes == its number
    # Static membership (KIP-345): a restarted instance with the same id takes its partitions
    # back at once instead of waiting for the group to time the old member out.
    instance_id: str | None = None


class _WaitForBatch(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self, locks: Sequence[asyncio.Lock], on_assign: Callable[[set[TopicPartition]], None]
    ) -> None:
        self._locks = locks
        self._on_assign = on_assign

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Each in-flight batch holds its lane's lock until its offsets are committed.
        for lock in self._locks:
            async with lock:
                pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._on_assign(set(assigned))


class ConsumerRunner(Generic[T]):
    def __init__(
        self,
        settings: RunnerSettings,
        handler: Handler[T],
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        metrics: RuntimeMetrics,
        *,
        on_committed: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self._handler = handler
        self._sessions = sessions
        self._producer = producer
        self._metrics = metrics
        self._on_committed = on_committed or (lambda: None)
        self._locks = [asyncio.Lock() for _ in range(max(1, settings.lanes))]
        self._stopping = False
        self._failing = False
        self._started = False
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._next_purge = 0.0
        self._ready_gauge = metrics.ready.labels(consumer=settings.consumer)

    @property
    def ready(self) -> bool:
        return self._started and not self._failing

    @property
    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def stop(self) -> None:
        """Ask the loop to finish the in-flight batch, commit, and return."""
        self._stopping = True

    def _set_failing(self, failing: bool) -> None:
        self._failing = failing
        self._ready_gauge.set(0 if failing or not self._started else 1)

    def _assigned_cb(self, assigned: set[TopicPartition]) -> None:
        for tp in self._assigned - assigned:  # revoked: another instance reports these now
            self._positions.pop(tp, None)
            try:
                self._metrics.lag.remove(self.settings.consumer, tp.topic, str(tp.partition))
            except KeyError:
                pass
        self._assigned = assigned

    async def run(self) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap,
            group_id=s.consumer,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.max_batch,
            session_timeout_ms=s.session_timeout_ms,
            max_poll_interval_ms=s.max_poll_interval_ms,
            group_instance_id=s.instance_id,
            isolation_level="read_committed",
        )
        backoff = Backoff()
        while True:
            try:
                await consumer.start()
                break
            except KafkaError as exc:
                self._set_failing(True)
                delay = backoff.next()
                log.warning(
                    "kafka unavailable; retrying", consumer=s.consumer, error=repr(exc), retry_in=delay
                )
                await asyncio.sleep(delay)
                if self._stopping:
                    return
        consumer.subscribe(list(s.topics), listener=_WaitForBatch(self._locks, self._assigned_cb))
        self._started = True
        self._set_failing(False)
        log.info("consumer started", consumer=s.consumer, topics=list(s.topics))
        try:
            if len(self._locks) == 1:
                await self._lane(consumer, 0)
            else:
                async with asyncio.TaskGroup() as lanes:
                    for lane in range(len(self._locks)):
                        lanes.create_task(self._lane(consumer, lane))
        finally:
            self._started = False
            self._ready_gauge.set(0)
            await consumer.stop()
            log.info("consumer stopped", consumer=s.consumer)

    async def _lane(self, consumer: AIOKafkaConsumer, lane: int) -> None:
        """Poll, apply and commit batches of this lane's partitions until stopped."""
        s = self.settings
        lanes = len(self._locks)
        while not self._stopping:
            if lanes == 1:
                batches = await consumer.getmany(timeout_ms=s.poll_timeout_ms, max_records=s.max_batch)
            else:
                mine = [tp for tp in self._assigned if tp.partition % lanes == lane]
                if not mine:  # nothing assigned to this lane (yet): look again after a poll's time
                    await asyncio.sleep(s.poll_timeout_ms / 1000)
                    continue
                batches = await consumer.getmany(*mine, timeout_ms=s.poll_timeout_ms, max_records=s.max_batch)
            if batches:
                async with self._locks[lane]:
                    await self._process(batches)
                    await self._commit(consumer, batches)
            if lane == 0:
                self._record_lag(consumer)
            await self._maybe_purge()

    async def _process(self, batches: dict[TopicPartition, list[Any]]) -> None:
        started = time.perf_counter()
        messages: list[Message[T]] = []
        seen: set[str] = set()
        for tp, records in batches.items():
            for record in records:
                try:
                    decoded = self._handler.decode(tp.topic, record.key, record.value)
                except PermanentError as exc:
                    await self._dead_letter(tp, record, exc.reason, str(exc))
                    continue
                if decoded.key in seen:  # an SDK retry landing in the same batch
                    continue
                seen.add(decoded.key)
                messages.append(
                    Message(
                        tp.topic, tp.partition, record.offset, decoded.value, decoded.key, decoded.received_at
                    )
                )
        if messages:
            try:
                await self._with_retry(lambda: self._apply(messages))
            except _Isolate:
                for message in messages:
                    await self._apply_alone(message, batches)
        self._on_committed()
        elapsed = time.perf_counter() - started
        self._metrics.processing_seconds.labels(consumer=self.settings.consumer).observe(elapsed)
        now = datetime.now(UTC)
        e2e = self._metrics.end_to_end_seconds.labels(consumer=self.settings.consumer)
        counts: dict[str, int] = {}
        for m in messages:
            counts[m.topic] = counts.get(m.topic, 0) + 1
            if m.received_at is not None:
                e2e.observe(max(0.0, (now - m.received_at).total_seconds()))
        for topic, n in counts.items():
            self._metrics.processed.labels(consumer=self.settings.consumer, topic=topic).inc(n)

    async def _apply(self, messages: Sequence[Message[T]]) -> None:
        async with self._sessions() as session, session.begin():
            fresh = await dedupe.claim(session, self.settings.consumer, [m.key for m in messages])
            todo = [m for m in messages if m.key in fresh]
            if todo:
                await self._handler.handle(session, todo)

    async def _apply_alone(self, message: Message[T], batches: dict[TopicPartition, list[Any]]) -> None:
        try:
            await self._with_retry(lambda: self._apply([message]))
        except _Isolate as iso:
            tp = TopicPartition(message.topic, message.partition)
            record = next(r for r in batches[tp] if r.offset == message.offset)
            exc = iso.cause
            reason = exc.reason if isinstance(exc, PermanentError) else type(exc).__name__
            log.error(
                "message dead-lettered",
                consumer=self.settings.consumer,
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                reason=reason,
                error=str(exc)[:500],
            )
            await self._dead_letter(tp, record, reason, str(exc))
            await self._with_retry(lambda: self._claim_only(message.key))

    async def _claim_only(self, key: str) -> None:
        async with self._sessions() as session, session.begin():
            await dedupe.claim(session, self.settings.consumer, [key])

    async def _with_retry(self, step: Callable[[], Any]) -> None:
        """Run `step` until it succeeds; transient errors back off, others raise _Isolate."""
        backoff = Backoff()
        while True:
            try:
                await step()
            except Exception as exc:
                if not is_retryable(exc):
                    raise _Isolate(exc) from exc
                self._set_failing(True)
                self._metrics.retries.labels(consumer=self.settings.consumer).inc()
                delay = backoff.next()
                log.warning(
                    "transient failure; retrying batch",
                    consumer=self.settings.consumer,
                    error=repr(exc)[:500],
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                continue
            if self._failing:
                self._set_failing(False)
            return

    async def _dead_letter(self, tp: TopicPartition, record: Any, reason: str, error: str) -> None:
        headers = [
            ("source_topic", tp.topic.encode()),
            ("source_partition", str(tp.partition).encode()),
            ("source_offset", str(record.offset).encode()),
            ("consumer", self.settings.consumer.encode()),
            ("error", error[:1000].encode(errors="replace")),
            ("reason", reason.encode()),
        ]

        async def send() -> None:
            fut = await self._producer.send(
                self.settings.deadletter_topic, value=record.value, key=record.key, headers=headers
            )
            await asyncio.wait_for(fut, 30)

        try:
            await self._with_retry(send)
        except _Isolate as iso:  # a non-retryable broker error: surface it, never drop silently
            raise iso.cause from iso
        self._metrics.deadlettered.labels(
            consumer=self.settings.consumer, topic=tp.topic, reason=reason
        ).inc()

    async def _commit(self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[Any]]) -> None:
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items() if records}
        self._positions.update(offsets)
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # Lost the partitions in a rebalance; the effects are committed and deduped, so the
            # new owner re-reading these messages changes nothing.
            log.warning(
                "offset commit rejected after rebalance", consumer=self.settings.consumer, error=repr(exc)
            )
        except KafkaError as exc:
            log.warning(
                "offset commit failed; messages will be redelivered and deduped",
                consumer=self.settings.consumer,
                error=repr(exc),
            )

    def _record_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in self._assigned:
            position = self._positions.get(tp)
            try:
                highwater = consumer.highwater(tp)
            except IllegalStateError:  # revoked meanwhile
                continue
            if highwater is None or position is None:
                continue
            self._metrics.lag.labels(
                consumer=self.settings.consumer, topic=tp.topic, partition=str(tp.partition)
            ).set(max(0, highwater - position))

    async def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + self.settings.dedupe_purge_every.total_seconds()
        before = datetime.now(UTC) - self.settings.dedupe_retention
        try:
            async with self._sessions() as session, session.begin():
                removed = await dedupe.purge(session, before)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            self._next_purge = now + 30
            return
        if removed:
            log.info("purged old dedupe keys", consumer=self.settings.consumer, removed=removed)


class _Isolate(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(repr(cause))
        self.cause = cause
