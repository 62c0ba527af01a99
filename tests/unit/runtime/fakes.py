"""In-memory ports for the consumer runner's policy (arroyo's local broker, in miniature).

One shared `events` log records what each port saw, in order, so tests can assert the commit
order (the store's transaction before the offsets) and that nothing was skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession

from shared import ids
from shared.runtime.errors import PermanentError
from shared.runtime.metrics import RuntimeMetrics
from shared.runtime.ports import OnAssigned, OnRevoked
from shared.runtime.records import Decoded, Message, Record
from shared.runtime.runner import ConsumerRunner, RunnerSettings

T = TypeVar("T")
TOPIC = "events"
SOURCE = "test.v1"


@dataclass
class FakeConsumer:
    """A group member over in-memory partitions: fetch positions, pauses, commits."""

    events: list[tuple[Any, ...]]
    partitions: dict[TopicPartition, list[Record]] = field(default_factory=dict)
    assigned: set[TopicPartition] = field(default_factory=set)
    retentions: dict[str, timedelta | None] = field(default_factory=dict)
    is_reachable: bool = True
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    paused: set[TopicPartition] = field(default_factory=set)
    polls_while_paused: int = 0
    poll_failures: list[Exception] = field(default_factory=list)  # raised by the next getmany() calls
    # Partitions whose poll never returns (a client stuck in a rebalance, say), nor a stop().
    hanging: set[int] = field(default_factory=set)
    stop_hangs: bool = False
    on_assigned: OnAssigned | None = None

    def add(self, partition: int, key: bytes | None, value: bytes, headers: Any = ()) -> Record:
        tp = TopicPartition(TOPIC, partition)
        log = self.partitions.setdefault(tp, [])
        record = Record(TOPIC, partition, len(log), key, value, tuple(headers))
        log.append(record)
        return record

    async def start(self, on_assigned: OnAssigned, on_revoked: OnRevoked) -> None:
        self.on_assigned = on_assigned
        on_assigned(set(self.assigned))

    async def stop(self) -> None:
        self.events.append(("consumer_stop",))
        if self.stop_hangs:
            await asyncio.Event().wait()

    async def getmany(
        self, partitions: Sequence[TopicPartition], timeout_ms: int, max_records: int
    ) -> Mapping[TopicPartition, Sequence[Record]]:
        if self.poll_failures:
            raise self.poll_failures.pop(0)
        wanted = list(partitions) or sorted(self.assigned)
        if any(tp.partition in self.hanging for tp in wanted):
            await asyncio.Event().wait()
        if self.paused and all(tp in self.paused for tp in wanted):
            self.polls_while_paused += 1
        out: dict[TopicPartition, list[Record]] = {}
        for tp in wanted:
            if tp in self.paused or tp not in self.assigned:
                continue
            pos = self.positions.get(tp, self.committed.get(tp, 0))
            got = self.partitions.get(tp, [])[pos : pos + max_records]
            if got:
                out[tp] = list(got)
                self.positions[tp] = pos + len(got)
                max_records -= len(got)
            if max_records <= 0:
                break
        await asyncio.sleep(0)
        return out

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self.paused |= set(partitions)
        self.events.append(("pause", sorted(self.paused)))

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self.paused -= set(partitions)
        self.events.append(("resume", sorted(partitions)))

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.committed.update(offsets)
        self.events.append(("commit", dict(offsets)))

    async def lag(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {
            tp: len(self.partitions.get(tp, [])) - self.committed.get(tp, 0)
            for tp in partitions
            if tp in self.assigned
        }

    async def retention(self, topics: Sequence[str]) -> dict[str, timedelta | None]:
        return {t: self.retentions.get(t, timedelta(days=7)) for t in topics}

    async def reachable(self) -> bool:
        return self.is_reachable


@dataclass
class FakeDeadLetters:
    events: list[tuple[Any, ...]]
    sent: list[tuple[str, bytes | None, bytes, dict[str, bytes]]] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)

    async def send(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((topic, key, value, dict(headers)))
        self.events.append(("dead_letter", value))

    async def reachable(self) -> bool:
        return True


@dataclass
class FakeSession:
    """What a handler writes through; kept only if the transaction commits."""

    effects: list[str] = field(default_factory=list)


@dataclass
class FakeStore:
    """Claims and effects commit together or not at all; `failures` fail the next transactions."""

    events: list[tuple[Any, ...]]
    claimed: set[tuple[str, str]] = field(default_factory=set)
    effects: list[str] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)
    on_failure: Callable[[], None] | None = None
    purged: int = 0

    async def apply(
        self,
        consumer: str,
        messages: Sequence[Message[T]],
        handle: Callable[[AsyncSession, Sequence[Message[T]]], Awaitable[None]],
    ) -> None:
        if self.failures:
            if self.on_failure is not None:
                self.on_failure()
            raise self.failures.pop(0)
        session = FakeSession()
        todo = [m for m in messages if (consumer, m.input_id) not in self.claimed]
        if todo:
            await handle(cast(AsyncSession, session), todo)
        self.claimed |= {(consumer, m.input_id) for m in todo}
        self.effects.extend(session.effects)
        self.events.append(("tx_commit", [m.input_id for m in todo]))

    async def purge(self, consumer: str, before: datetime, limit: int) -> int:
        return 0


@dataclass
class FakeHandler:
    """Values are `user:message_id[:flag]`; flags: `poison` (PermanentError), `bug` (KeyError).

    Anything that is not ASCII with a colon fails decode() with a ValueError.
    """

    fixed: bool = False  # after "the fix is deployed", poison is processed normally

    def decode(self, record: Record) -> Decoded[tuple[str, str, str]]:
        user, _, rest = record.value.decode("ascii").partition(":")
        if not rest:
            raise ValueError("not user:message_id")
        message_id, _, flag = rest.partition(":")
        return Decoded((user, message_id, flag), ids.input_id(SOURCE, user, message_id))

    async def handle(self, session: AsyncSession, messages: Sequence[Message[tuple[str, str, str]]]) -> None:
        effects = cast(FakeSession, session).effects
        for m in messages:
            flag = m.value[2]
            if flag == "poison" and not self.fixed:
                raise PermanentError("poison", f"user {m.value[0]} sent poison")
            if flag == "bug":
                raise KeyError("a code bug")
            effects.append(m.value[1])


@dataclass
class Kit:
    """A runner on fakes, with every port at hand."""

    runner: ConsumerRunner[tuple[str, str, str]]
    consumer: FakeConsumer
    store: FakeStore
    deadletters: FakeDeadLetters
    handler: FakeHandler
    registry: CollectorRegistry
    events: list[tuple[Any, ...]]
    sleeps: list[float]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


def make_kit(partitions: int = 1, on_sleep: Callable[[Kit], None] | None = None, **settings: Any) -> Kit:
    events: list[tuple[Any, ...]] = []
    consumer = FakeConsumer(events, assigned={TopicPartition(TOPIC, p) for p in range(partitions)})
    store = FakeStore(events)
    deadletters = FakeDeadLetters(events)
    handler = FakeHandler()
    registry = CollectorRegistry()
    sleeps: list[float] = []
    kit: Kit

    async def sleep(delay: float) -> None:
        sleeps.append(delay)
        if on_sleep is not None:
            on_sleep(kit)
        await asyncio.sleep(0)

    options: dict[str, Any] = {"poll_timeout_ms": 100, **settings}
    runner: ConsumerRunner[tuple[str, str, str]] = ConsumerRunner(
        RunnerSettings(consumer="c", topics=[TOPIC], bootstrap="unused:9092", **options),
        handler,
        None,
        None,
        RuntimeMetrics.create(registry, "test"),
        consumer=consumer,
        store=store,
        deadletters=deadletters,
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        sleep=sleep,
    )
    kit = Kit(runner, consumer, store, deadletters, handler, registry, events, sleeps)
    return kit


async def started(kit: Kit) -> Kit:
    """Join the (fake) group the way run() does, without the lanes."""
    await kit.consumer.start(kit.runner.on_assigned, kit.runner.on_revoked)
    kit.runner.mark_started(True)
    return kit
