"""A database that stops answering is a retryable error in bounded time, and /ready sees it.

Before the engines had timeouts, a frozen PostgreSQL (its processes stopped with SIGSTOP) left
every database call of a service waiting forever: admin requests hung and `/ready` stayed 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.runtime.db import DatabaseWatch, create_engine
from shared.runtime.errors import is_retryable
from tests.conftest import Stack, eventually


@contextlib.contextmanager
def frozen(stack: Stack) -> Iterator[None]:
    """The whole server stopped (postmaster and every backend), as `kill -STOP` does; resumed after."""
    postmaster = int((stack.postgres.pgdata / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):  # the backends: the postmaster's children
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(stat.parent.name))
    stopped: list[int] = []
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


async def test_a_statement_beyond_the_timeout_is_cancelled_as_a_retryable_error(database: str) -> None:
    engine = create_engine(database, pool_size=1, statement_timeout=0.5)
    unlimited = create_engine(database, pool_size=1, statement_timeout=None)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError) as caught:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT pg_sleep(10)"))
        assert time.monotonic() - started < 4
        assert is_retryable(caught.value), repr(caught.value)
        async with engine.connect() as conn:  # the pool recovered
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
        async with unlimited.connect() as conn:  # e.g. migrations: never cut
            await conn.execute(text("SELECT pg_sleep(0.8)"))
    finally:
        await engine.dispose()
        await unlimited.dispose()


async def test_a_frozen_server_is_a_retryable_error_in_bounded_time(stack: Stack, database: str) -> None:
    engine = create_engine(database, pool_size=1, connect_timeout=1.0, statement_timeout=1.0)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))  # a pooled connection, then the server freezes
        started = time.monotonic()
        with frozen(stack):
            with pytest.raises(TimeoutError) as pooled:
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            with pytest.raises(TimeoutError) as new:  # a new connection: the connect timeout
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            elapsed = time.monotonic() - started
        assert is_retryable(pooled.value), repr(pooled.value)
        assert is_retryable(new.value), repr(new.value)
        assert elapsed < 12, elapsed
        async with engine.connect() as conn:  # the server resumed: the engine works again
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()


async def test_the_database_watch_is_unhealthy_while_the_server_is_frozen(
    stack: Stack, database: str
) -> None:
    engine = create_engine(database, pool_size=1, connect_timeout=1.0, statement_timeout=0.5)
    watch = DatabaseWatch(engine, every=0.1, stale_after=1.0)
    task = asyncio.create_task(watch.run())
    try:
        await eventually(watch.check)
        assert watch.healthy()
        with frozen(stack):
            await eventually(lambda: not watch.healthy(), timeout=5)
        await eventually(watch.healthy, timeout=10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await engine.dispose()
