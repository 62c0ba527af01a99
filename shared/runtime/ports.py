"""The consumer runner's three ports: the Kafka consumer, the dead-letter producer, the store.

Real adapters: `kafka_ports.KafkaConsumerPort`, `kafka_ports.KafkaDeadLetters` (aiokafka) and
`store.SqlStore` (SQLAlchemy). Unit tests of the runner's policy plug in-memory fakes instead
(`tests/unit/runtime/fakes.py`), in the manner of arroyo's local broker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from aiokafka import TopicPartition
from sqlalchemy.ext.asyncio import AsyncSession

from shared.runtime.records import Message, Record

T = TypeVar("T")

OnAssigned = Callable[[set[TopicPartition]], None]
OnRevoked = Callable[[set[TopicPartition]], Awaitable[None]]


class ConsumerPort(Protocol):
    """A group member on the source topics. Offsets are only ever committed explicitly."""

    async def start(self, on_assigned: OnAssigned, on_revoked: OnRevoked) -> None:
        """Connect and subscribe; raises a retryable error while the broker is unreachable.

        `on_revoked` is awaited before partitions are given away (the runner waits for its
        in-flight batches there); `on_assigned` gets every new assignment, even an empty one.
        """
        ...

    async def stop(self) -> None: ...

    async def getmany(
        self, partitions: Sequence[TopicPartition], timeout_ms: int, max_records: int
    ) -> Mapping[TopicPartition, Sequence[Record]]:
        """Records of `partitions` (all assigned when empty), waiting up to `timeout_ms` for some.

        Calling it, even for paused partitions only, is what keeps the member in its group.
        """
        ...

    def pause(self, partitions: Iterable[TopicPartition]) -> None: ...

    def resume(self, partitions: Iterable[TopicPartition]) -> None: ...

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit `offsets` (the next offset to read). Losing the partitions meanwhile is not an error."""
        ...

    async def lag(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Messages behind the end, per partition whose end offset is known."""
        ...

    async def retention(self, topics: Sequence[str]) -> dict[str, timedelta | None]:
        """Each topic's `retention.ms` as the broker applies it (None = kept forever)."""
        ...

    async def reachable(self) -> bool:
        """A cheap, bounded check that the broker answers."""
        ...


class DeadLetterPort(Protocol):
    async def send(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        """Publish one record and wait until the broker acknowledged it."""
        ...

    async def reachable(self) -> bool: ...


class StorePort(Protocol):
    """The transactional store: a batch's dedupe claims and its effects commit together."""

    async def apply(
        self,
        consumer: str,
        messages: Sequence[Message[T]],
        handle: Callable[[AsyncSession, Sequence[Message[T]]], Awaitable[None]],
    ) -> None:
        """In ONE transaction: claim the messages' input ids for `consumer`, call `handle` with the
        ones not claimed before (if any), commit. Any exception rolls everything back."""
        ...

    async def purge(self, consumer: str, before: datetime, limit: int) -> int:
        """Forget at most `limit` of `consumer`'s claims older than `before`; return how many."""
        ...
