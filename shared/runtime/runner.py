"""The consumer runner: Kafka in, one PostgreSQL transaction per batch, offsets after commit.

For each polled batch the runner
1. decodes every record with the handler (any exception → dead-letter topic, unclaimed),
2. opens ONE transaction that claims the batch's dedupe keys (`shared.ids.dedupe_hash` of each
   input id) and hands the new messages to the handler, which writes its effects and outbox rows
   in that same transaction,
3. commits it, wakes the outbox relay, and only then commits the Kafka offsets (offset + 1).

The failure policy (retry, isolation of a `PermanentError`, dead letters, the breaker,
`ConsumerFailed`) is `consumer_loop.ConsumerLoop`'s; this module adds the lifecycle: the dedupe
retention check against the broker at start, the lanes, the broker reachability check behind
`ready`, the lag of every assigned partition, and the periodic purge of old dedupe keys.

With `lanes` > 1 that many batches are in flight at once, each from its own fixed share of the
partitions (partition number modulo `lanes`), so one batch's database round trips overlap another's
decoding and domain work; each partition is still processed in order by one lane, as if by
`lanes` consumers of one group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.logging import get_logger
from shared.runtime.consumer_loop import ConsumerLoop
from shared.runtime.dedupe import RetentionTooShort, validate_retention
from shared.runtime.errors import Backoff, ConsumerFailed, is_retryable
from shared.runtime.kafka_ports import KafkaConsumerPort, KafkaDeadLetters
from shared.runtime.metrics import RuntimeMetrics
from shared.runtime.ports import ConsumerPort, DeadLetterPort, StorePort
from shared.runtime.records import Decoded, Handler, Message, Record
from shared.runtime.retry import FailureLog
from shared.runtime.runner_settings import RunnerSettings
from shared.runtime.store import SqlStore

__all__ = [
    "ConsumerFailed",
    "ConsumerRunner",
    "Decoded",
    "Handler",
    "Message",
    "Record",
    "RunnerSettings",
]

T = TypeVar("T")
log = get_logger(__name__)


class ConsumerRunner(ConsumerLoop[T]):
    """Runs a `Handler` on Kafka and PostgreSQL (DESIGN.md §3.1, §3.3).

    `run()` returns after `stop()`, and raises `ConsumerFailed` when the consumer cannot go on (the
    process must then exit non-zero). The ports default to aiokafka and SQLAlchemy; tests may pass
    in-memory ones (`consumer`, `store`, `deadletters`).
    """

    def __init__(
        self,
        settings: RunnerSettings,
        handler: Handler[T],
        sessions: async_sessionmaker[AsyncSession] | None,
        producer: AIOKafkaProducer | None,
        metrics: RuntimeMetrics,
        *,
        on_committed: Callable[[], None] | None = None,
        consumer: ConsumerPort | None = None,
        store: StorePort | None = None,
        deadletters: DeadLetterPort | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if store is None:
            if sessions is None:
                raise ValueError("either sessions or store is needed")
            store = SqlStore(sessions)
        if deadletters is None:
            if producer is None:
                raise ValueError("either producer or deadletters is needed")
            deadletters = KafkaDeadLetters(producer, settings.bootstrap)
        if consumer is None:
            consumer = KafkaConsumerPort(
                bootstrap=settings.bootstrap,
                group=settings.consumer,
                topics=settings.topics,
                max_batch=settings.max_batch,
                session_timeout_ms=settings.session_timeout_ms,
                max_poll_interval_ms=settings.max_poll_interval_ms,
                instance_id=settings.instance_id,
            )
        super().__init__(
            settings,
            handler,
            consumer=consumer,
            store=store,
            deadletters=deadletters,
            metrics=metrics,
            on_committed=on_committed,
            clock=clock,
            sleep=sleep,
        )

    async def run(self) -> None:
        s = self.settings
        try:
            started = await self._start()
        except BaseException:
            await self._consumer.stop()
            raise
        if not started:
            await self._consumer.stop()
            return
        log.info("consumer started", consumer=s.consumer, topics=list(s.topics), lanes=s.lanes)
        lanes = [asyncio.create_task(self._lane(n), name=f"{s.consumer}-lane-{n}") for n in range(s.lanes)]
        background = [
            asyncio.create_task(self._watch_broker(), name=f"{s.consumer}-health"),
            asyncio.create_task(self._purge_loop(), name=f"{s.consumer}-purge"),
            asyncio.create_task(
                self._every(s.lag_every_seconds, "lag measurement", self.record_lag, first=False),
                name=f"{s.consumer}-lag",
            ),
        ]
        try:
            done, _ = await asyncio.wait(lanes, return_when=asyncio.FIRST_EXCEPTION)
            failed = [t for t in done if not t.cancelled() and t.exception() is not None]
            if failed:
                self.mark_started(False)  # not ready from now on, however long stopping takes
                self.stop()  # the other lanes finish their batch and commit, within the grace
                _, stuck = await asyncio.wait(lanes, timeout=s.stop_grace_seconds)
                if stuck:
                    log.error(
                        "lanes did not finish after a failure; cancelling them",
                        consumer=s.consumer,
                        lanes=len(stuck),
                    )
                raise failed[0].exception()  # type: ignore[misc]
        finally:
            self.stop()
            self.mark_started(False)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            for task in lanes:  # still running: run() was cancelled, or a lane outlived the grace
                task.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)
            try:
                await asyncio.wait_for(self._consumer.stop(), s.stop_grace_seconds)
            except TimeoutError:
                log.error("the Kafka client did not stop in time; leaving it", consumer=s.consumer)
            log.info("consumer stopped", consumer=s.consumer)

    async def _lane(self, lane: int) -> None:
        """Iterate until stopped. run_once() retries the store and the dead-letter topic itself; what
        escapes it comes from polling the broker: retried while retryable, else ConsumerFailed."""
        s = self.settings
        backoff = Backoff(s.retry_initial_seconds, s.retry_max_seconds)
        failures = FailureLog("consumer poll", consumer=s.consumer, lane=lane)
        token = object()
        try:
            while not self._stopping:
                try:
                    await self.run_once(lane)
                except ConsumerFailed:
                    raise
                except Exception as exc:
                    if not is_retryable(exc):
                        log.error("consumer poll failed", consumer=s.consumer, error=repr(exc)[:500])
                        raise ConsumerFailed(f"consumer {s.consumer}: polling failed: {exc!r}") from exc
                    delay = backoff.next()
                    failures.failed(exc, delay)
                    self._failing[token] = f"polling failing: {type(exc).__name__}"
                    self._update_ready()
                    await self._sleep(delay)
                    continue
                if failures.failing:
                    failures.recovered()
                    backoff.reset()
                    self._failing.pop(token, None)
                    self._update_ready()
        finally:
            self._failing.pop(token, None)

    async def _start(self) -> bool:
        """Check the dedupe retention against the broker, then join the group. False if stopped first."""
        s = self.settings
        backoff = Backoff(s.retry_initial_seconds, s.retry_max_seconds)
        failures = FailureLog("consumer start", consumer=s.consumer)
        while not self._stopping:
            try:
                retention = await self._consumer.retention(s.topics)
                validate_retention(s.dedupe_retention, retention)
                await self._consumer.start(self.on_assigned, self.on_revoked)
            except RetentionTooShort as exc:
                log.error("consumer cannot start", consumer=s.consumer, error=str(exc))
                raise ConsumerFailed(f"consumer {s.consumer}: {exc}") from exc
            except Exception as exc:
                if not is_retryable(exc):
                    raise ConsumerFailed(f"consumer {s.consumer} failed to start: {exc!r}") from exc
                self.set_reachable(False)
                delay = backoff.next()
                failures.failed(exc, delay)
                await self._sleep(delay)
                continue
            failures.recovered()
            self.set_reachable(True)
            self.mark_started(True)
            return True
        return False

    async def _watch_broker(self) -> None:
        """Keep `ready` honest about the broker: a cheap connectivity check, every few seconds."""

        async def check() -> None:
            try:
                consumer_ok, producer_ok = await asyncio.gather(
                    self._consumer.reachable(), self._deadletters.reachable()
                )
            except Exception:
                self.set_reachable(False)  # a check that cannot tell says "not ready"
                raise
            self.set_reachable(consumer_ok and producer_ok)

        await self._every(self.settings.health_check_every_seconds, "broker check", check, first=False)

    async def _purge_loop(self) -> None:
        """Forget dedupe keys older than the retention, in bounded batches until none are left,
        every `dedupe_purge_every`; each batch is its own short transaction beside the batches."""
        s = self.settings
        if s.dedupe_retention is None:
            return

        async def purge() -> None:
            removed = await self.purge_once()
            if removed:
                log.info("purged old dedupe keys", consumer=s.consumer, removed=removed)

        await self._every(s.dedupe_purge_every.total_seconds(), "dedupe purge", purge, first=True)

    async def _every(
        self, seconds: float, what: str, step: Callable[[], Awaitable[None]], *, first: bool
    ) -> None:
        """Run `step` every `seconds` for as long as run() runs; a failure is logged once (not per
        attempt) and tried again next time: these chores must never take the consumer down."""
        failures = FailureLog(what, consumer=self.settings.consumer)
        if not first:
            await asyncio.sleep(seconds)
        while True:
            try:
                await step()
            except Exception as exc:
                failures.failed(exc, seconds)
            else:
                failures.recovered()
            await asyncio.sleep(seconds)

    async def purge_once(self) -> int:
        """Delete every dedupe key of this consumer older than the retention; return how many."""
        s = self.settings
        if s.dedupe_retention is None:
            return 0
        before = self._clock() - s.dedupe_retention
        total = 0
        while True:
            removed = await self._store.purge(s.consumer, before, s.dedupe_purge_batch)
            total += removed
            if removed < s.dedupe_purge_batch:
                return total
            await asyncio.sleep(0)  # let the batches' transactions in between
