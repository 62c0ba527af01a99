"""Dedupe keys recorded in the same transaction as a handler's effects.

A key is claimed once per consumer; a redelivered message finds its key taken and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_CLAIM = text(
    """
    INSERT INTO processed_messages (consumer, key)
    SELECT :consumer, k FROM unnest(CAST(:keys AS text[])) AS k
    ON CONFLICT DO NOTHING
    RETURNING key
    """
)
_PURGE = text(
    """
    DELETE FROM processed_messages WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM processed_messages WHERE processed_at < :before LIMIT :limit))
    """
)


async def claim(session: AsyncSession, consumer: str, keys: Sequence[str]) -> set[str]:
    """Record `keys` as processed; return those that were not processed before."""
    if not keys:
        return set()
    result = await session.execute(_CLAIM, {"consumer": consumer, "keys": list(keys)})
    return {row[0] for row in result}


async def purge(session: AsyncSession, before: datetime, limit: int = 10_000) -> int:
    """Forget keys processed before `before`, at most `limit` per call; returns how many."""
    result = await session.execute(_PURGE, {"before": before, "limit": limit})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
