"""Dedupe keys recorded in the same transaction as a handler's effects (DESIGN.md §3.1).

A key is the 32-byte `shared.ids.dedupe_hash` of a scoped input id, claimed once per consumer; a
redelivered message finds its key taken and changes nothing. The fixed size means no input, however
long its ids, can make recording it fail. Keys are purged per consumer once older than the
retention, which must cover the source topics' retention (`validate_retention`) so that a re-read
of a record still in Kafka never re-applies it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.ids import dedupe_hash

_CLAIM = text(
    """
    INSERT INTO processed_messages (consumer, key_hash)
    SELECT :consumer, k FROM unnest(CAST(:keys AS bytea[])) AS k
    ON CONFLICT DO NOTHING
    RETURNING key_hash
    """
)
# Oldest first through the (consumer, processed_at) index; one bounded batch per statement so a
# purge never holds locks or a snapshot for long.
_PURGE = text(
    """
    DELETE FROM processed_messages WHERE consumer = :consumer AND key_hash = ANY (ARRAY(
        SELECT key_hash FROM processed_messages
        WHERE consumer = :consumer AND processed_at < :before
        ORDER BY processed_at LIMIT :limit))
    """
)


class RetentionTooShort(ValueError):
    """The dedupe retention is shorter than a source topic's: a re-read could re-apply a message."""


async def claim(session: AsyncSession, consumer: str, input_ids: Sequence[str]) -> set[str]:
    """Record `input_ids` as processed by `consumer`; return those that were not processed before."""
    if not input_ids:
        return set()
    by_hash = {dedupe_hash(i): i for i in input_ids}
    result = await session.execute(_CLAIM, {"consumer": consumer, "keys": list(by_hash)})
    return {by_hash[bytes(row[0])] for row in result}


async def purge(session: AsyncSession, consumer: str, before: datetime, limit: int = 10_000) -> int:
    """Forget at most `limit` of `consumer`'s keys processed before `before`; returns how many."""
    result = await session.execute(_PURGE, {"consumer": consumer, "before": before, "limit": limit})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def validate_retention(dedupe_retention: timedelta | None, topics: Mapping[str, timedelta | None]) -> None:
    """Raise `RetentionTooShort` unless `dedupe_retention` covers every topic's retention.

    `None` means forever, on either side: a topic kept forever needs dedupe keys kept forever.
    Kafka deletes whole log segments, so a record can outlive `retention.ms` by up to a segment's
    age (`segment.ms`); a margin above the topic's retention covers that.
    """
    if dedupe_retention is None:
        return
    for topic, retention in sorted(topics.items()):
        if retention is None or retention > dedupe_retention:
            shown = "infinite (retention.ms=-1)" if retention is None else f"{retention} (retention.ms)"
            raise RetentionTooShort(
                f"topic {topic!r} keeps records for {shown} but RunnerSettings.dedupe_retention is "
                f"{dedupe_retention}: a re-read could apply a message twice; set dedupe_retention to "
                f"at least the topic's retention (None keeps dedupe keys forever)"
            )
