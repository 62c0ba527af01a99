"""The consumer runner's policy, on ports: poll → decode → apply in one transaction → commit offsets.

`ConsumerLoop.run_once()` is one iteration; `run()` starts the consumer and runs the iterations of
every lane until `stop()`. The policy (DESIGN.md §3.1, §3.3):
- offsets are committed (offset + 1) only after the store's transaction committed;
- any exception from `decode()` dead-letters the record; a `PermanentError` from `handle()` makes
  the runner re-run the batch one message per transaction, and dead-letters the message that
  raises it alone. Dead-lettered input ids are never claimed, so a replay after a fix applies them;
- any other exception is retried with jittered backoff, never skipped, with the batch's partitions
  paused and polling kept up (the member stays in its group), `ready` False meanwhile and `stop()`
  honoured; a non-retryable one (a bug) past `max_unexpected_failures` raises `ConsumerFailed`;
- the dead-letter breaker raises `ConsumerFailed` once too many recent messages were dead-lettered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Generic, TypeVar

from aiokafka import TopicPartition

from shared.logging import get_logger
from shared.runtime.consumer_state import ConsumerState
from shared.runtime.dlq_policy import DeadLetterBreaker, Reasons, dead_letter_headers
from shared.runtime.errors import Backoff, ConsumerFailed, PermanentError, is_retryable
from shared.runtime.metrics import RuntimeMetrics
from shared.runtime.ports import ConsumerPort, DeadLetterPort, StorePort
from shared.runtime.records import Handler, Message, Record
from shared.runtime.retry import FailureLog
from shared.runtime.runner_settings import RunnerSettings

T = TypeVar("T")
log = get_logger("shared.runtime.runner")

Batches = Mapping[TopicPartition, Sequence[Record]]


class _Stopped(Exception):
    """stop() was called while a batch was being retried: leave it uncommitted."""


class ConsumerLoop(ConsumerState, Generic[T]):
    def __init__(
        self,
        settings: RunnerSettings,
        handler: Handler[T],
        *,
        consumer: ConsumerPort,
        store: StorePort,
        deadletters: DeadLetterPort,
        metrics: RuntimeMetrics,
        on_committed: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(settings, metrics)
        self._handler = handler
        self._consumer = consumer
        self._store = store
        self._deadletters = deadletters
        self._on_committed = on_committed or (lambda: None)
        self._clock = clock
        self._sleep = sleep
        self._breaker = DeadLetterBreaker(settings.breaker)
        self._reasons = Reasons()

    # -- one iteration --------------------------------------------------------------------------

    def _lane_partitions(self, lane: int) -> list[TopicPartition]:
        lanes = self.settings.lanes
        return sorted(tp for tp in self._assigned if tp.partition % lanes == lane)

    async def run_once(self, lane: int = 0) -> None:
        """Poll this lane's partitions once; apply, dead-letter and commit what came."""
        s = self.settings
        mine = self._lane_partitions(lane)
        if s.lanes > 1 and not mine:  # nothing assigned to this lane (yet): look again after a poll
            await self._sleep(s.poll_timeout_ms / 1000)
            return
        # One lane polls every assigned partition (an empty list); several poll their own share.
        batches = await self._consumer.getmany(
            mine if s.lanes > 1 else [], timeout_ms=s.poll_timeout_ms, max_records=s.max_batch
        )
        if batches:
            async with self._locks[lane]:
                try:
                    await self._process(batches)
                except _Stopped:
                    return
                await self._consumer.commit(
                    {tp: records[-1].offset + 1 for tp, records in batches.items() if records}
                )
            tripped = self._breaker.tripped
            if tripped is not None:
                log.error(
                    "dead-letter breaker tripped; stopping the consumer", consumer=s.consumer, why=tripped
                )
                raise ConsumerFailed(f"consumer {s.consumer}: dead-letter breaker tripped: {tripped}")

    async def _process(self, batches: Batches) -> None:
        started = time.perf_counter()
        partitions = list(batches)
        messages: list[Message[T]] = []
        records: dict[tuple[str, int, int], Record] = {}
        seen: set[str] = set()
        for batch in batches.values():
            for record in batch:
                try:
                    decoded = self._handler.decode(record)
                except Exception as exc:  # whatever decode() raises, the record can never succeed
                    await self._dead_letter(record, exc, partitions)
                    continue
                if decoded.input_id in seen:  # an SDK retry landing in the same batch: a duplicate
                    self._breaker.record(dead=False)
                    self._metrics.processed.labels(consumer=self.settings.consumer, topic=record.topic).inc()
                    continue
                seen.add(decoded.input_id)
                records[(record.topic, record.partition, record.offset)] = record
                messages.append(
                    Message(
                        record.topic,
                        record.partition,
                        record.offset,
                        decoded.value,
                        decoded.input_id,
                        decoded.received_at,
                        record.headers,
                    )
                )
        applied = messages
        if messages:
            try:
                await self._retrying(lambda: self._apply(messages), partitions, "batch")
            except PermanentError:
                applied = []
                for m in messages:  # isolate: one transaction per message finds the bad one
                    try:
                        await self._retrying(lambda m=m: self._apply([m]), partitions, "message")  # type: ignore[misc]
                    except PermanentError as exc:
                        await self._dead_letter(records[(m.topic, m.partition, m.offset)], exc, partitions)
                        continue
                    applied.append(m)
            for _ in applied:
                self._breaker.record(dead=False)
        self._on_committed()
        self._observe(applied, time.perf_counter() - started)

    async def _apply(self, messages: Sequence[Message[T]]) -> None:
        await self._store.apply(self.settings.consumer, messages, self._handler.handle)

    def _observe(self, applied: Sequence[Message[T]], elapsed: float) -> None:
        consumer = self.settings.consumer
        self._metrics.processing_seconds.labels(consumer=consumer).observe(elapsed)
        now = self._clock()
        e2e = self._metrics.end_to_end_seconds.labels(consumer=consumer)
        counts: dict[str, int] = {}
        for m in applied:
            counts[m.topic] = counts.get(m.topic, 0) + 1
            if m.received_at is not None:
                e2e.observe(max(0.0, (now - m.received_at).total_seconds()))
        for topic, n in counts.items():
            self._metrics.processed.labels(consumer=consumer, topic=topic).inc(n)

    async def _dead_letter(
        self, record: Record, exc: Exception, partitions: Sequence[TopicPartition]
    ) -> None:
        s = self.settings
        reason = self._reasons.of(exc)
        headers = dead_letter_headers(record, s.consumer, reason, exc, self._clock())

        async def send() -> None:
            await self._deadletters.send(s.deadletter_topic, record.key, record.value, headers)

        await self._retrying(send, partitions, "dead-letter publish", permanent_is_final=False)
        log.error(
            "message dead-lettered",
            consumer=s.consumer,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason,
            error_type=type(exc).__name__,
        )
        self._metrics.deadlettered.labels(consumer=s.consumer, topic=record.topic, reason=reason).inc()
        self._breaker.record(dead=True)

    # -- retries --------------------------------------------------------------------------------

    async def _retrying(
        self,
        step: Callable[[], Awaitable[None]],
        partitions: Sequence[TopicPartition],
        what: str,
        *,
        permanent_is_final: bool = True,
    ) -> None:
        """Run `step` until it succeeds. PermanentError (when final) propagates at once; a
        retryable error is retried for as long as it lasts; any other is retried up to the bound,
        then raises ConsumerFailed. While retrying, `partitions` are paused and still polled."""
        s = self.settings
        backoff = Backoff(s.retry_initial_seconds, s.retry_max_seconds)
        failures = FailureLog(f"consumer {what}", consumer=s.consumer)
        token = object()
        unexpected = 0
        try:
            while True:
                try:
                    await step()
                except PermanentError as exc:
                    if permanent_is_final:
                        raise
                    exc_info: Exception = exc
                    unexpected += 1
                except Exception as exc:
                    exc_info = exc
                    if not is_retryable(exc):
                        unexpected += 1
                else:
                    failures.recovered()
                    return
                if unexpected > s.max_unexpected_failures:
                    log.error(
                        "unexpected error persists; stopping the consumer",
                        consumer=s.consumer,
                        step=what,
                        attempts=failures.failures + 1,
                        error=repr(exc_info)[:500],
                    )
                    raise ConsumerFailed(
                        f"consumer {s.consumer}: {what} failed {unexpected} times with an unexpected "
                        f"error: {exc_info!r}"[:1000]
                    ) from exc_info
                delay = backoff.next()
                if not failures.failing:
                    self._consumer.pause(partitions)
                    self._failing[token] = f"{what} failing: {type(exc_info).__name__}"
                    self._update_ready()
                failures.failed(exc_info, delay)
                self._metrics.retries.labels(consumer=s.consumer).inc()
                await self._wait_polling(delay, partitions)
        finally:
            if self._failing.pop(token, None) is not None:
                self._consumer.resume(partitions)
                self._update_ready()

    async def _wait_polling(self, delay: float, partitions: Sequence[TopicPartition]) -> None:
        """Wait `delay` seconds while polling the paused `partitions`, which keeps the member in its
        group however long the outage (max.poll.interval.ms); raises _Stopped on stop()."""
        loop = asyncio.get_running_loop()
        remaining = delay
        while remaining > 0:
            if self._stopping:
                raise _Stopped
            chunk = min(remaining, self.settings.poll_timeout_ms / 1000)
            began = loop.time()
            if await self._consumer.getmany(partitions, timeout_ms=int(chunk * 1000), max_records=1):
                # Paused partitions never return records; if one did, its position moved past a
                # record we would not apply: fail rather than skip it (a restart re-reads it).
                raise ConsumerFailed(
                    f"consumer {self.settings.consumer}: a paused partition returned records"
                )
            spent = loop.time() - began
            if spent < chunk:
                await self._sleep(chunk - spent)
            remaining -= chunk
        if self._stopping:
            raise _Stopped

    # -- lag ------------------------------------------------------------------------------------

    async def record_lag(self) -> None:
        """Set the lag gauge of every assigned partition, whichever lane owns it (run() calls this
        every `lag_every_seconds`, off the batches' path)."""
        partitions = sorted(self._assigned)
        if not partitions:
            return
        for tp, lag in (await self._consumer.lag(partitions)).items():
            self._metrics.lag.labels(
                consumer=self.settings.consumer, topic=tp.topic, partition=str(tp.partition)
            ).set(lag)
