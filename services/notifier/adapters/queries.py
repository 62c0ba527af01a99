"""Read queries behind the notifier's API: reports, message history, failed deliveries, inbox.

Inbox writes (mark read) are here too: they touch only the inbox row, under the user's lock
taken by the route.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.domain.sends import OUTCOME_KINDS, OutcomeKind


async def user_exists(session: AsyncSession, user_id: str) -> bool:
    found = await session.execute(text("SELECT 1 FROM users WHERE user_id = :id"), {"id": user_id})
    return found.first() is not None


async def campaign_outcomes(session: AsyncSession, campaign: str) -> list[tuple[str, OutcomeKind, int]]:
    rows = await session.execute(
        text("SELECT variant, kind, count(*) AS n FROM outcomes WHERE campaign = :c GROUP BY variant, kind"),
        {"c": campaign},
    )
    return [(r.variant, r.kind, int(r.n)) for r in rows if r.kind in OUTCOME_KINDS]


async def campaign_goals(session: AsyncSession, campaign: str) -> list[tuple[str, int, int]]:
    """Per group: entries and entries that reached the goal."""
    rows = await session.execute(
        text(
            "SELECT grp, count(*) AS n, count(converted_at) AS x FROM entries WHERE campaign = :c GROUP BY grp"
        ),
        {"c": campaign},
    )
    return [(r.grp, int(r.n), int(r.x)) for r in rows]


async def user_messages(session: AsyncSession, user_id: str, limit: int) -> list[dict[str, Any]]:
    rows = await session.execute(
        text(
            """
            SELECT send_key, campaign, variant, channel, state, reason, attempts, message,
                   due_at, created_at, updated_at, sent_at
            FROM sends WHERE user_id = :u ORDER BY created_at DESC, send_key LIMIT :n
            """
        ),
        {"u": user_id, "n": limit},
    )
    return [dict(r._mapping) for r in rows]


async def failed_deliveries(session: AsyncSession, campaign: str | None, limit: int) -> list[dict[str, Any]]:
    """Failed sends, with whether their job can be replayed (a channel failure, not a template's)."""
    rows = await session.execute(
        text(
            """
            SELECT s.send_key, s.user_id, s.campaign, s.variant, s.channel, s.reason, s.attempts,
                   s.updated_at AS failed_at, (j.state = 'failed') AS replayable
            FROM sends s LEFT JOIN jobs j ON j.id = s.send_key
            WHERE s.state = 'failed' AND (CAST(:c AS text) IS NULL OR s.campaign = :c)
            ORDER BY s.updated_at, s.send_key LIMIT :n
            """
        ),
        {"c": campaign, "n": limit},
    )
    return [{**dict(r._mapping), "replayable": bool(r.replayable)} for r in rows]


async def send_state(session: AsyncSession, send_key: str) -> tuple[str, str | None] | None:
    """The send's state and its job's state (None: no such send)."""
    row = (
        await session.execute(
            text(
                "SELECT s.state, j.state AS job FROM sends s LEFT JOIN jobs j ON j.id = s.send_key "
                "WHERE s.send_key = :k"
            ),
            {"k": send_key},
        )
    ).first()
    return None if row is None else (row.state, row.job)


async def mark_queued(session: AsyncSession, send_key: str) -> None:
    await session.execute(
        text("UPDATE sends SET state = 'queued', updated_at = now() WHERE send_key = :k"), {"k": send_key}
    )


async def inbox_list(
    session: AsyncSession, user_id: str, limit: int, before: datetime | None
) -> list[dict[str, Any]]:
    rows = await session.execute(
        text(
            """
            SELECT send_key AS id, campaign, title, body, url, created_at, read_at FROM inbox
            WHERE user_id = :u AND (CAST(:before AS timestamptz) IS NULL OR created_at < :before)
            ORDER BY created_at DESC, send_key LIMIT :n
            """
        ),
        {"u": user_id, "n": limit, "before": before},
    )
    return [dict(r._mapping) for r in rows]


async def unread_count(session: AsyncSession, user_id: str) -> int:
    n = await session.execute(
        text("SELECT count(*) FROM inbox WHERE user_id = :u AND read_at IS NULL"), {"u": user_id}
    )
    return int(n.scalar_one())


async def mark_read(session: AsyncSession, user_id: str, message_id: str, at: datetime) -> datetime | None:
    """Mark one message read (idempotent: the first read time stays); None if it is not the user's."""
    row = (
        await session.execute(
            text(
                "UPDATE inbox SET read_at = coalesce(read_at, :at) WHERE send_key = :id AND user_id = :u "
                "RETURNING read_at"
            ),
            {"at": at, "id": message_id, "u": user_id},
        )
    ).first()
    return None if row is None else row.read_at
