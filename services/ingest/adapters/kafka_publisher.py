"""Publishing events to Kafka and knowing whether Kafka can take them.

`publish` returns only once the broker acknowledged every record (`acks=all`, idempotent
producer) and raises `PublishFailed` if any record failed or the acknowledgements did not all
arrive within `ack_timeout`; the caller answers 503 then. A background supervisor probes the
broker connection every `probe_interval` seconds (that is `/ready`), creates the producer if
Kafka was down at start, and replaces a producer whose sender died.

While the broker is known to be unreachable, `publish` refuses at once instead of buffering: an
idempotent aiokafka producer never expires a batch, so events queued during an outage would be
delivered later even though the client was told 503 and will send them again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from services.ingest.adapters.batching import PartitionBatcher, RecordTooLarge
from shared.kafka import partition_for
from shared.logging import get_logger

log = get_logger(__name__)


class PublishFailed(Exception):
    """Kafka did not acknowledge every record; none of the request may be assumed stored."""


class InFlightBudget:
    """Bytes awaiting acknowledgement, bounded: `take` refuses once `limit` would be passed,
    except when nothing is in flight, so a single request bigger than the limit still goes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used and self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give_back(self, size: int) -> None:
        self.used -= size


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


class KafkaPublisher:
    """An `EventPublisher` on one topic with one aiokafka producer (built by `factory`)."""

    def __init__(
        self,
        factory: Callable[[], AIOKafkaProducer],
        topic: str,
        *,
        ack_timeout: float,
        probe_interval: float = 1.0,
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
        self._broken = False
        self._supervisor: asyncio.Task[None] | None = None
        self._budget = InFlightBudget(max_in_flight_bytes)

    @property
    def available(self) -> bool:
        """True while the last probe reached the leaders of the topic and no send has failed."""
        return self._available

    async def start(self) -> None:
        """Try to connect once, then keep supervising in the background (never raises)."""
        await self._connect()
        if self._producer is not None:
            self._available = await self._probe(self._producer)
        self._supervisor = asyncio.create_task(self._supervise(), name="kafka-publisher-probe")

    async def stop(self) -> None:
        """Stop probing, then flush and close the producer."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        self._available = False
        await self._close_producer()

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
        try:
            async with asyncio.timeout(self._ack_timeout):
                # Known metadata returns at once; unknown metadata is fetched (bounded).
                partitions = len(await producer.partitions_for(self._topic))
                append = batcher.append
                for record in records:
                    key = record.key
                    waiting.add(append(partition_for(key, partitions), key, record.value))
                batcher.flush()
                if waiting:
                    await asyncio.wait(waiting)
        except TimeoutError:
            self._available = False  # until the next probe: refuse fast instead of queueing
            for fut in waiting:
                if not fut.done():
                    fut.add_done_callback(_consume_result)
            raise PublishFailed(
                f"Kafka did not acknowledge {len(records)} events within {self._ack_timeout}s"
            ) from None
        except RecordTooLarge as exc:
            raise PublishFailed(str(exc)) from exc
        except KafkaError as exc:
            self._available = False
            raise PublishFailed(f"Kafka metadata unavailable: {exc!r}") from exc
        failed = None
        for fut in waiting:
            error = fut.exception()
            if error is not None and failed is None:
                failed = error
        if failed is not None:
            if not isinstance(failed, KafkaError) or not failed.retriable:
                self._broken = True  # e.g. the sender died: replace the producer
            self._available = False
            raise PublishFailed(f"Kafka refused events: {failed!r}") from failed

    async def _connect(self) -> None:
        producer = self._factory()
        try:
            async with asyncio.timeout(self._start_timeout):
                await producer.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("kafka_connect_failed", error=repr(exc), topic=self._topic)
            with contextlib.suppress(Exception):
                await producer.stop()
            return
        self._producer = producer
        self._batcher = PartitionBatcher(producer, self._topic)
        self._broken = False
        log.info("kafka_connected", topic=self._topic)

    async def _close_producer(self) -> None:
        """Hand over what requests appended, then flush and stop, bounded by the ack timeout
        (a producer never gives up on an unreachable broker by itself)."""
        producer, batcher = self._producer, self._batcher
        self._producer = self._batcher = None
        if producer is None or batcher is None:
            return
        try:
            async with asyncio.timeout(self._ack_timeout):
                await batcher.wait_submitted()
                await producer.stop()
        except (KafkaError, TimeoutError) as exc:
            log.warning("kafka_producer_stop_incomplete", error=repr(exc))
            batcher.fail_pending(PublishFailed("the producer was stopped"))

    async def _probe(self, producer: AIOKafkaProducer) -> bool:
        """Metadata for the topic is known and the leader of every partition is connected."""
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
            await asyncio.sleep(self._probe_interval)
            try:
                if self._broken:
                    log.warning("kafka_producer_replaced", topic=self._topic)
                    self._available = False
                    await self._close_producer()
                if self._producer is None:
                    await self._connect()
                producer = self._producer
                ok = producer is not None and await self._probe(producer)
            except Exception as exc:  # the probe must outlive any surprise; it is the readiness
                log.exception("kafka_probe_failed", error=repr(exc))
                ok = False
            if ok != self._available:
                log.info("kafka_availability_changed", available=ok, topic=self._topic)
            self._available = ok
