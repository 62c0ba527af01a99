"""Outages on real servers: the member keeps its partitions through a database outage longer than
max.poll.interval.ms, stop() works mid-outage, and readiness follows the broker (DESIGN.md §3.3)."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.stack import KafkaNode, PostgresNode
from scripts.stack.kafka import REPO_ROOT
from scripts.stack.procs import free_port
from scripts.stack.topics import ensure_topics
from tests.conftest import Stack, eventually, unique
from tests.integration.runtime.harness import counters, running_service
from tests.integration.runtime.test_runner import DLQ, EVENTS, OUT, msgs, produce

# The broker's group.min.session.timeout.ms is 6 s; max.poll.interval.ms has no floor in aiokafka
# (the coordinator leaves the group once no getmany() ran for that long).
SESSION_TIMEOUT_MS = 6_000
MAX_POLL_INTERVAL_MS = 10_000


async def _eq(coro: object, expected: object) -> bool:
    return bool(await coro == expected)  # type: ignore[misc]


async def test_a_database_outage_longer_than_max_poll_interval_keeps_the_assignment(
    stack: Stack, topics: dict[str, str], tmp_path: Path
) -> None:
    pg = PostgresNode(home=tmp_path / "pg", port=free_port(), fsync=False)
    pg.start()
    pg.ensure_databases(("svc",))
    try:
        async with running_service(
            stack.bootstrap,
            pg.async_url("svc"),
            unique("g"),
            topics[EVENTS],
            topics[OUT],
            topics[DLQ],
            session_timeout_ms=SESSION_TIMEOUT_MS,
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        ) as svc:
            await produce(stack.bootstrap, topics[EVENTS], msgs(3, 5, "a"))
            await eventually(lambda: _eq(counters(svc.engine), {f"u{u}": (15, 5) for u in range(3)}))
            owned = svc.runner.assignment
            assert len(owned) == 3
            assert len(svc.assignments) == 1

            pg.stop(mode="immediate")
            await produce(stack.bootstrap, topics[EVENTS], msgs(3, 5, "b"))
            await eventually(lambda: not svc.runner.ready, timeout=20)
            assert svc.runner.check()["retrying"]
            # The outage must outlast max.poll.interval.ms (and the session timeout): the point of
            # the test is what the group does meanwhile, so this wait is the scenario, not a guess.
            await asyncio.sleep(MAX_POLL_INTERVAL_MS / 1000 * 1.5)
            assert not svc.runner.ready
            assert svc.runner.assignment == owned
            pg.start()
            await eventually(lambda: svc.runner.ready, timeout=30)
            await eventually(lambda: _eq(counters(svc.engine), {f"u{u}": (30, 10) for u in range(3)}))
            assert svc.assignments == [owned], "the member was dropped from its group and rejoined"
            assert svc.runner.assignment == owned

            # stop() is honoured while a batch is being retried.
            pg.stop(mode="immediate")
            await produce(stack.bootstrap, topics[EVENTS], msgs(3, 1, "c"))
            await eventually(lambda: not svc.runner.ready, timeout=20)
            svc.runner.stop()
            await asyncio.wait_for(asyncio.shield(svc.runner_task), 5)
            pg.start()  # for the relay to drain and the harness to close
            assert await counters(svc.engine) == {f"u{u}": (30, 10) for u in range(3)}
    finally:
        pg.stop(mode="immediate")


@pytest.fixture
def private_kafka() -> Iterator[KafkaNode]:
    home = REPO_ROOT / ".local" / f"test-{os.getpid()}-runtime-{uuid.uuid4().hex[:6]}"
    node = KafkaNode.on_free_ports(home)
    node.start()
    try:
        yield node
    finally:
        node.stop()
        shutil.rmtree(home, ignore_errors=True)


async def test_readiness_follows_the_broker(private_kafka: KafkaNode, database: str) -> None:
    bootstrap = private_kafka.bootstrap
    names = {t: f"{t}.{uuid.uuid4().hex[:8]}" for t in (EVENTS, OUT, DLQ)}
    await ensure_topics(bootstrap, 3, tuple(names.values()))
    async with running_service(
        bootstrap,
        database,
        unique("g"),
        names[EVENTS],
        names[OUT],
        names[DLQ],
        health_check_every_seconds=0.5,
    ) as svc:
        await produce(bootstrap, names[EVENTS], msgs(2, 3, "a"))
        await eventually(lambda: _eq(counters(svc.engine), {"u0": (6, 3), "u1": (6, 3)}))
        assert svc.runner.ready
        assert svc.runner.check()["partitions"] == [f"{names[EVENTS]}:{p}" for p in range(3)]

        await asyncio.to_thread(private_kafka.stop)
        await eventually(lambda: not svc.runner.ready, timeout=5)
        assert svc.runner.check()["failing"] == "broker unreachable"

        await asyncio.to_thread(private_kafka.start)
        await eventually(lambda: svc.runner.ready, timeout=60)
        await produce(bootstrap, names[EVENTS], msgs(2, 3, "b"))
        await eventually(lambda: _eq(counters(svc.engine), {"u0": (12, 6), "u1": (12, 6)}), timeout=60)
