"""The runner's transactional store on SQLAlchemy: dedupe claims and effects in one transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.runtime import dedupe
from shared.runtime.records import Message

T = TypeVar("T")


class SqlStore:
    """`ports.StorePort` on a service's database (tables of `shared.runtime.schema`)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def apply(
        self,
        consumer: str,
        messages: Sequence[Message[T]],
        handle: Callable[[AsyncSession, Sequence[Message[T]]], Awaitable[None]],
    ) -> None:
        async with self._sessions() as session, session.begin():
            fresh = await dedupe.claim(session, consumer, [m.input_id for m in messages])
            todo = [m for m in messages if m.input_id in fresh]
            if todo:
                await handle(session, todo)

    async def purge(self, consumer: str, before: datetime, limit: int) -> int:
        async with self._sessions() as session, session.begin():
            return await dedupe.purge(session, consumer, before, limit)
