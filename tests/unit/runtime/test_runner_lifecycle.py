"""The runner's lifecycle on in-memory ports: readiness, start checks, lanes, lag, purge, run()."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest

from shared.runtime.dedupe import RetentionTooShort, validate_retention
from shared.runtime.errors import ConsumerFailed
from tests.unit.runtime.fakes import TOPIC, make_kit, started


async def test_ready_only_once_an_assignment_was_received_even_an_empty_one() -> None:
    kit = make_kit(partitions=0)
    assert not kit.runner.ready
    assert kit.runner.check()["failing"] == "not started"
    kit.runner.mark_started(True)
    assert not kit.runner.ready
    assert kit.runner.check()["failing"] == "waiting for the group assignment"
    kit.runner.on_assigned(set())
    assert kit.runner.ready
    assert kit.sample("userops_consumer_ready", consumer="c") == 1
    assert kit.runner.check() == {
        "consumer": "c",
        "ready": True,
        "joined": True,
        "broker_reachable": True,
        "retrying": False,
        "partitions": [],
        "failing": None,
    }


async def test_not_ready_while_the_broker_is_unreachable() -> None:
    kit = await started(make_kit(partitions=2))
    kit.runner.set_reachable(False)
    assert not kit.runner.ready
    assert kit.sample("userops_consumer_ready", consumer="c") == 0
    check = kit.runner.check()
    assert check["failing"] == "broker unreachable"
    assert check["partitions"] == [f"{TOPIC}:0", f"{TOPIC}:1"]
    kit.runner.set_reachable(True)
    assert kit.runner.ready


def test_retention_must_cover_every_topic() -> None:
    week = timedelta(days=7)
    validate_retention(week, {"a": week, "b": timedelta(days=1)})
    validate_retention(None, {"a": None})
    with pytest.raises(RetentionTooShort, match=r"'b'.*8 days.*dedupe_retention is 7 days"):
        validate_retention(week, {"a": week, "b": timedelta(days=8)})
    with pytest.raises(RetentionTooShort, match=r"infinite"):
        validate_retention(timedelta(days=3650), {"a": None})


async def test_run_refuses_to_start_when_the_topic_outlives_the_dedupe_keys() -> None:
    kit = make_kit(dedupe_retention=timedelta(days=1))
    kit.consumer.retentions[TOPIC] = timedelta(days=2)
    with pytest.raises(ConsumerFailed, match=rf"{TOPIC}.*2 days.*1 day"):
        await asyncio.wait_for(kit.runner.run(), 5)
    assert kit.consumer.on_assigned is None  # never joined the group


async def test_run_raises_consumer_failed_on_a_persistent_bug_and_stops_the_consumer() -> None:
    kit = make_kit(max_unexpected_failures=2, lanes=2, partitions=2)
    kit.consumer.add(0, b"u", b"u:m0:bug")
    kit.consumer.add(1, b"v", b"v:m0")
    with pytest.raises(ConsumerFailed):
        await asyncio.wait_for(kit.runner.run(), 5)
    assert kit.events[-1] == ("consumer_stop",)
    assert not kit.runner.ready


async def test_a_failed_lane_ends_run_even_when_another_lane_or_the_client_never_returns() -> None:
    """A lane stuck in a poll that never returns (or a Kafka client whose stop() hangs) must not
    keep a failed consumer looking alive: run() turns unready at once and raises within the grace."""
    kit = make_kit(max_unexpected_failures=2, lanes=2, partitions=2, stop_grace_seconds=0.2)
    kit.consumer.add(0, b"u", b"u:m0:bug")
    kit.consumer.hanging = {1}
    kit.consumer.stop_hangs = True
    task = asyncio.create_task(kit.runner.run())
    with pytest.raises(ConsumerFailed):
        await asyncio.wait_for(asyncio.shield(task), 5)
    assert not kit.runner.ready
    assert ("consumer_stop",) in kit.events


async def test_run_returns_after_stop() -> None:
    kit = make_kit(partitions=1)
    kit.consumer.add(0, b"u", b"u:m0")
    applied = asyncio.Event()
    kit.consumer.events = kit.store.events = _Notifying(applied)
    task = asyncio.create_task(kit.runner.run())
    await asyncio.wait_for(applied.wait(), 5)
    kit.runner.stop()
    await asyncio.wait_for(task, 5)
    assert kit.store.effects == ["m0"]
    assert kit.consumer.events[-1] == ("consumer_stop",)


async def test_a_transient_polling_error_is_retried_and_a_fatal_one_ends_run() -> None:
    from aiokafka.errors import KafkaConnectionError, UnsupportedVersionError

    kit = make_kit(partitions=1)
    kit.consumer.poll_failures = [KafkaConnectionError("broker gone")] * 3
    kit.consumer.add(0, b"u", b"u:m0")
    applied = asyncio.Event()
    kit.consumer.events = kit.store.events = _Notifying(applied)
    task = asyncio.create_task(kit.runner.run())
    await asyncio.wait_for(applied.wait(), 5)
    assert kit.runner.ready
    kit.consumer.poll_failures = [UnsupportedVersionError("a fatal client error")]
    with pytest.raises(ConsumerFailed, match="polling failed"):
        await asyncio.wait_for(task, 5)
    assert kit.store.effects == ["m0"]
    assert len(kit.sleeps) == 3


class _Notifying(list[tuple[Any, ...]]):
    """An event log that sets `event` when a transaction commits."""

    def __init__(self, event: asyncio.Event) -> None:
        super().__init__()
        self._event = event

    def append(self, item: tuple[Any, ...]) -> None:
        super().append(item)
        if item[0] == "tx_commit":
            self._event.set()


async def test_each_lane_polls_its_own_partitions_and_lag_covers_them_all() -> None:
    kit = await started(make_kit(partitions=3, lanes=2, max_batch=2))
    for p in range(3):
        for i in range(3):
            kit.consumer.add(p, b"u", f"u{p}:m{i}".encode())
    await kit.runner.run_once(1)  # partition 1 only
    assert kit.store.effects == ["m0", "m1"]
    await kit.runner.run_once(0)  # partitions 0 and 2 (2 records: both from partition 0)
    await kit.runner.record_lag()
    lags = {
        p: kit.sample("userops_consumer_lag", consumer="c", topic=TOPIC, partition=str(p)) for p in range(3)
    }
    assert lags == {0: 1, 1: 1, 2: 3}  # every partition of the lane, even one with nothing committed


async def test_purge_loops_until_nothing_older_than_the_retention_remains() -> None:
    kit = make_kit(dedupe_purge_batch=100)
    calls: list[tuple[str, datetime, int]] = []
    left = [100, 100, 37]

    async def purge(consumer: str, before: datetime, limit: int) -> int:
        calls.append((consumer, before, limit))
        return left.pop(0)

    kit.store.purge = purge  # type: ignore[method-assign]
    assert await kit.runner.purge_once() == 237
    assert [c[0] for c in calls] == ["c", "c", "c"]
    assert calls[0][1] == datetime.fromisoformat("2025-12-25T00:00:00+00:00")  # clock - 7 days


async def test_no_purge_when_keys_are_kept_forever() -> None:
    kit = make_kit(dedupe_retention=None)
    assert await kit.runner.purge_once() == 0
