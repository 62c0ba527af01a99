"""What flows through the consumer runner: records in, decoded messages to the handler.

`Handler` is a service's side of the runner: `decode()` turns one Kafka record into a value and its
input id (`shared.ids.input_id`), `handle()` applies a batch inside the runner's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed Kafka record as a handler sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Decoded(Generic[T]):
    """What a handler makes of one record: the value, its input id, and when ingest received it."""

    value: T
    input_id: str  # made with shared.ids.input_id(...)
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Message(Generic[T]):
    """A decoded record handed to `Handler.handle()`."""

    topic: str
    partition: int
    offset: int
    value: T
    input_id: str
    received_at: datetime | None
    headers: Headers = ()


class Handler(Protocol[T]):
    """A service's side of the runner. It must not commit; the runner owns the transaction."""

    def decode(self, record: Record) -> Decoded[T]:
        """Parse one record. Any exception dead-letters the record (unclaimed); the consumer goes on."""
        ...

    async def handle(self, session: AsyncSession, messages: Sequence[Message[T]]) -> None:
        """Apply `messages` (new ones only, in partition order) inside the open transaction.

        `PermanentError` for one message → that message alone is dead-lettered (found by re-running
        the batch one message at a time), unclaimed; the others are applied. Any other exception is
        retried with backoff; a non-retryable one past the runner's bound stops the consumer.
        """
        ...
