"""Publishing events to Kafka and knowing whether Kafka can take them.

`publish` returns only once the broker acknowledged every record (`acks=all`, idempotent
producer) and raises `PublishFailed` if any record failed or the acknowledgements did not all
arrive within `ack_timeout`; the caller answers 503 then. A background supervisor probes the
broker connection every `probe_interval` seconds (that is `/ready`).

An outage is a state, entered once and left once, each with one log line (`kafka_unavailable`,
`kafka_available`). On entering it the producer is discarded with everything it still holds:
an idempotent aiokafka producer never expires a batch, and one with batches for unreachable
leaders retries metadata in a tight loop (most of a core, and a flood of log lines). Discarding
fails the waiting requests at once (503, the clients retry) and leaves nothing to be delivered
later behind the clients' backs. While the broker is down, `publish` refuses at once and the
supervisor tries a fresh producer with jittered exponential backoff (from `probe_interval` up to
`max_probe_interval`). aiokafka's own repeated log lines are throttled (`log_throttle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from services.ingest.adapters.batching import PartitionBatcher, RecordTooLarge
from services.ingest.adapters.in_flight import InFlightBudget
from services.ingest.adapters.log_throttle import RepeatThrottle
from shared.kafka import partition_for
from shared.logging import get_logger
from shared.runtime.errors import Backoff

log = get_logger(__name__)


class PublishFailed(Exception):
    """Kafka did not acknowledge every record; none of the request may be assumed stored."""


class Record(Protocol):
    @property
    def key(self) -> bytes: ...
    @property
    def value(self) -> bytes: ...


class EventPublisher(Protocol):
    """The port the ingest use case publishes through."""

    @property
    def available(self) -> bool: ...

    async def publish(self, records: Sequence[Record]) -> None: ...


def _consume_result(fut: asyncio.Future[Any]) -> None:
    """Retrieve a late future's outcome so asyncio does not log it as never retrieved."""
    if not fut.cancelled():
        fut.exception()


def _drop_batches(producer: AIOKafkaProducer, exc: Exception) -> None:
    """Fail every batch an aiokafka producer holds, so that `stop()` returns instead of flushing
    for ever (its sender and client then close). aiokafka has no public way to do this; this
    uses its accumulator's internals (as of aiokafka 0.12-0.14; test_outage covers it)."""
    accumulator = producer._message_accumulator
    # A batch queued again for a retry was taken out of the pending set, but the callback its
    # first send attached removes it from there when it completes (a KeyError otherwise).
    for queue in accumulator._batches.values():
        accumulator._pending_batches.update(batch for batch in queue if batch.retry_count)
    accumulator.fail_all(exc)


class KafkaPublisher:
    """An `EventPublisher` on one topic with one aiokafka producer (built by `factory`)."""

    def __init__(
        self,
        factory: Callable[[], AIOKafkaProducer],
        topic: str,
        *,
        ack_timeout: float,
        probe_interval: float = 1.0,
        max_probe_interval: float = 5.0,
        start_timeout: float = 10.0,
        max_in_flight_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._factory = factory
        self._topic = topic
        self._ack_timeout = ack_timeout
        self._probe_interval = probe_interval
        self._start_timeout = start_timeout
        self._producer: AIOKafkaProducer | None = None
        self._batcher: PartitionBatcher | None = None
        self._available = False
        self._failure: str | None = None  # why a send failed; the supervisor acts on it
        self._state: bool | None = None  # the last verdict logged (None: none yet)
        self._down_since: float | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._backoff = Backoff(probe_interval, max(probe_interval, max_probe_interval))
        self._budget = InFlightBudget(max_in_flight_bytes)
        self._throttle = RepeatThrottle()

    @property
    def available(self) -> bool:
        """True while the last probe reached the leaders of the topic and no send has failed."""
        return self._available

    async def start(self) -> None:
        """Try to connect once, then keep supervising in the background (never raises)."""
        self._throttle.install()
        ok = await self._connect() and await self._probe()
        if not ok:
            await self._discard(PublishFailed("Kafka is unavailable"))
        self._set_state(ok, "" if ok else "cannot reach the topic's leaders at start")
        self._supervisor = asyncio.create_task(self._supervise(), name="kafka-publisher-probe")

    async def stop(self) -> None:
        """Stop probing, then flush and close the producer (or drop what it holds, if the
        broker is unreachable: nothing could be flushed)."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        was_available, self._available = self._available, False
        if was_available:
            await self._close_producer()
        else:
            await self._discard(PublishFailed("the publisher was stopped during a Kafka outage"))
        self._throttle.uninstall()

    async def publish(self, records: Sequence[Record]) -> None:
        producer, batcher = self._producer, self._batcher
        if producer is None or batcher is None or not self._available:
            raise PublishFailed("Kafka is unavailable")
        size = sum(len(record.value) for record in records)
        if not self._budget.take(size):
            raise PublishFailed(f"over {self._budget.limit} bytes already await Kafka (overloaded)")
        try:
            await self._publish(producer, batcher, records)
        finally:
            self._budget.give_back(size)

    async def _publish(
        self, producer: AIOKafkaProducer, batcher: PartitionBatcher, records: Sequence[Record]
    ) -> None:
        waiting: set[asyncio.Future[None]] = set()
        deadline = asyncio.get_running_loop().time() + self._ack_timeout
        try:
            known = producer.client.cluster.partitions_for_topic(self._topic)
            if known:
                partitions = len(known)
            else:  # unknown metadata is fetched (bounded)
                async with asyncio.timeout_at(deadline):
                    partitions = len(await producer.partitions_for(self._topic))
            append = batcher.append
            for record in records:
                key = record.key
                waiting.add(append(partition_for(key, partitions), key, record.value))
            batcher.flush()
            if waiting:
                remaining = deadline - asyncio.get_running_loop().time()
                _, pending = await asyncio.wait(waiting, timeout=max(0.0, remaining))
                if pending:
                    raise TimeoutError
        except TimeoutError:
            for fut in waiting:
                if not fut.done():
                    fut.add_done_callback(_consume_result)
            reason = f"Kafka did not acknowledge {len(records)} events within {self._ack_timeout}s"
            self._failed(reason)
            raise PublishFailed(reason) from None
        except RecordTooLarge as exc:
            raise PublishFailed(str(exc)) from exc
        except KafkaError as exc:
            self._failed(f"metadata unavailable: {exc!r}")
            raise PublishFailed(f"Kafka metadata unavailable: {exc!r}") from exc
        failed = None
        for fut in waiting:
            error = fut.exception()
            if error is not None and failed is None:
                failed = error
        if failed is not None:
            if isinstance(failed, PublishFailed):  # the producer was discarded meanwhile
                raise failed
            self._failed(f"send failed: {failed!r}")
            raise PublishFailed(f"Kafka refused events: {failed!r}") from failed

    def _failed(self, reason: str) -> None:
        """A send failed: refuse new requests at once and have the supervisor replace the
        producer now (its batches would otherwise be retried for ever)."""
        self._available = False
        if self._failure is None:
            self._failure = reason
        self._wake.set()

    async def _connect(self) -> bool:
        producer = self._factory()
        try:
            async with asyncio.timeout(self._start_timeout):
                await producer.start()
        except (KafkaError, OSError, TimeoutError):
            with contextlib.suppress(Exception):
                await producer.stop()
            return False
        self._producer = producer
        self._batcher = PartitionBatcher(producer, self._topic)
        return True

    async def _close_producer(self) -> None:
        """Hand over what requests appended, then flush and stop, bounded by the ack timeout
        (a producer never gives up on an unreachable broker by itself)."""
        producer, batcher = self._producer, self._batcher
        if producer is None or batcher is None:
            return
        try:
            async with asyncio.timeout(self._ack_timeout):
                await batcher.wait_submitted()
                await producer.stop()
            self._producer = self._batcher = None
        except (KafkaError, TimeoutError) as exc:
            log.warning("kafka_producer_stop_incomplete", error=repr(exc))
            await self._discard(PublishFailed("the producer was stopped"))

    async def _discard(self, exc: PublishFailed) -> None:
        """Fail everything the producer holds, then stop it without waiting for the broker."""
        producer, batcher = self._producer, self._batcher
        self._producer = self._batcher = None
        if batcher is not None:
            batcher.fail_pending(exc)
        if producer is None:
            return
        _drop_batches(producer, exc)
        try:
            async with asyncio.timeout(max(1.0, self._probe_interval)):
                await producer.stop()
        except Exception as error:  # it is gone either way; say so if it did not go quietly
            log.warning("kafka_producer_discard_incomplete", error=repr(error))
            with contextlib.suppress(Exception):
                await producer.client.close()

    async def _probe(self) -> bool:
        """Metadata for the topic is known and the leader of every partition is connected."""
        producer = self._producer
        if producer is None:
            return False
        try:
            async with asyncio.timeout(max(self._probe_interval, 1.0)):
                partitions = await producer.partitions_for(self._topic)
                cluster = producer.client.cluster
                leaders = {cluster.leader_for_partition(TopicPartition(self._topic, p)) for p in partitions}
                if not leaders or None in leaders or -1 in leaders:
                    producer.client.force_metadata_update()
                    return False
                for node in leaders:
                    if not await producer.client.ready(node):
                        return False
        except (KafkaError, OSError, TimeoutError):
            return False
        return True

    async def _supervise(self) -> None:
        while True:
            delay = self._probe_interval if self._available else self._backoff.next()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()
            reason = self._failure
            self._failure = None
            try:
                if reason is None:
                    if self._producer is None and not await self._connect():
                        reason = "cannot connect to the bootstrap servers"
                    elif not await self._probe():
                        reason = "the topic's partition leaders are unreachable"
                if reason is not None and self._producer is not None:
                    await self._discard(PublishFailed(f"Kafka is unavailable ({reason})"))
            except Exception as exc:  # the probe must outlive any surprise; it is the readiness
                log.exception("kafka_probe_failed", error=repr(exc))
                reason = f"probe error: {exc!r}"
            self._set_state(reason is None, reason or "")

    def _set_state(self, ok: bool, reason: str) -> None:
        """Record the probe's verdict; log only a change of state (with the outage's length
        and how many library log lines were throttled meanwhile)."""
        previous, self._state = self._state, ok
        self._available = ok
        if ok:
            self._backoff.reset()
        if ok == previous:
            return
        if ok:
            down_since, self._down_since = self._down_since, None
            outage = {} if down_since is None else {"outage_seconds": round(time.monotonic() - down_since, 1)}
            log.info(
                "kafka_available",
                topic=self._topic,
                library_lines_suppressed=self._throttle.suppressed_total,
                **outage,
            )
        else:
            self._down_since = time.monotonic()
            log.warning("kafka_unavailable", topic=self._topic, reason=reason)
