"""Test fixtures: a private, real Kafka broker and PostgreSQL server per test session.

Started lazily (only when an integration test asks), on free ports, under `.local/test-<pid>`, by
the same `scripts.stack` code that `make run` uses; stopped and removed at the end of the session.
Each test gets its own topics and databases, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import asyncpg
import pytest

from scripts.stack import KafkaNode, PostgresNode
from scripts.stack.kafka import REPO_ROOT
from scripts.stack.procs import free_port
from scripts.stack.topics import ensure_topics


@dataclass
class Stack:
    kafka: KafkaNode
    postgres: PostgresNode

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    home = REPO_ROOT / ".local" / f"test-{os.getpid()}"
    kafka = KafkaNode.on_free_ports(home / "kafka")
    postgres = PostgresNode(home=home / "postgres", port=free_port(), fsync=False)
    kafka.start()
    postgres.start()
    try:
        yield Stack(kafka=kafka, postgres=postgres)
    finally:
        kafka.stop()
        postgres.stop(mode="immediate")
        shutil.rmtree(home, ignore_errors=True)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def topics(stack: Stack) -> dict[str, str]:
    """Fresh topic names for one test (3 partitions each), mapped from their contract names."""
    from shared import topics as t

    names = {name: f"{name}.{uuid.uuid4().hex[:8]}" for name in t.ALL_TOPICS}
    await ensure_topics(stack.bootstrap, 3, tuple(names.values()))
    return names


@pytest.fixture
async def new_database(stack: Stack) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """A factory of fresh empty databases (dropped after the test); each call yields an asyncpg URL."""
    names: list[str] = []

    async def make() -> str:
        name = unique("t")
        conn = await asyncpg.connect(stack.postgres.url())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        names.append(name)
        return stack.postgres.async_url(name)

    yield make
    conn = await asyncpg.connect(stack.postgres.url())
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def database(new_database: Callable[[], Awaitable[str]]) -> str:
    """A fresh empty database for one test: its URL (postgresql+asyncpg://...)."""
    return await new_database()


def plain_url(async_url: str) -> str:
    """The asyncpg-native form of a SQLAlchemy URL."""
    return async_url.replace("postgresql+asyncpg://", "postgresql://")


async def eventually(check, timeout: float = 30.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll `check` (sync or async) until it returns a truthy value or the deadline passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")
        await asyncio.sleep(interval)
