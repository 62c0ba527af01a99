"""The async SQLAlchemy engine every service uses: asyncpg, orjson for JSON columns.

Every engine has a connect timeout and a statement timeout (asyncpg's `timeout` and
`command_timeout`), so a database that stops answering (a frozen server, a lost network) turns
into a `TimeoutError`, retryable (`errors.is_retryable`), after a bounded wait instead of a call
that hangs forever. Long statements on purpose (migrations, bench fills) use an engine with
`statement_timeout=None`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from shared.logging import get_logger

log = get_logger(__name__)

DEFAULT_CONNECT_TIMEOUT: Final = 10.0  # seconds to open a connection
DEFAULT_STATEMENT_TIMEOUT: Final = 30.0  # seconds one statement may take; None: no limit


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_engine(
    url: str,
    pool_size: int = 10,
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    statement_timeout: float | None = DEFAULT_STATEMENT_TIMEOUT,
) -> AsyncEngine:
    """An engine on `url`; a statement running longer than `statement_timeout` seconds is
    cancelled and raises `TimeoutError` (None: statements may run as long as they take)."""
    if connect_timeout <= 0 or (statement_timeout is not None and statement_timeout <= 0):
        raise ValueError(
            f"database timeouts must be positive seconds: connect {connect_timeout}, statement {statement_timeout}"
        )
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        connect_args={"timeout": connect_timeout, "command_timeout": statement_timeout},
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """One session per unit of work; repositories never commit, the unit of work does."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


class DatabaseWatch:
    """Whether the database answers: `SELECT 1` every `every` seconds on its own engine (not the
    service's pool, which a busy consumer may hold), so `/ready` turns 503 when the database
    stops answering (frozen, unreachable) even while every part waits on it without an error.

    `healthy()` is false once no check has succeeded for `stale_after` seconds: a check that hangs
    counts as a failure without waiting for it to time out.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        every: float = 5.0,
        stale_after: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.every = every
        self.stale_after = stale_after
        self._clock = clock
        self._last_ok = clock()  # the service just migrated its database: it answered
        self._answering = True

    def healthy(self) -> bool:
        return self._clock() - self._last_ok <= self.stale_after

    async def check(self) -> bool:
        """One `SELECT 1`; True when it answered."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means "not answering"
            if self._answering:
                log.warning("database not answering", error=repr(exc)[:300])
            self._answering = False
            return False
        self._last_ok = self._clock()
        if not self._answering:
            log.info("database answering again")
        self._answering = True
        return True

    async def run(self) -> None:
        """Check every `every` seconds until cancelled."""
        while True:
            await self.check()
            await asyncio.sleep(self.every)
