"""Who referred whom (at most one referrer per referee), for the cycle check of later claims."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def referrers_of(session: AsyncSession, referees: Iterable[str]) -> dict[str, str]:
    ids = list(set(referees))
    if not ids:
        return {}
    rows = await session.execute(
        text("SELECT referee_id, referrer_id FROM referrals WHERE referee_id = ANY(:ids)"), {"ids": ids}
    )
    return {r.referee_id: r.referrer_id for r in rows}


async def referral_edges(session: AsyncSession, starts: Iterable[str], depth: int = 64) -> dict[str, str]:
    """referee → referrer for every edge on the referral chains starting at `starts`."""
    ids = list(set(starts))
    if not ids:
        return {}
    rows = await session.execute(
        text(
            """
            WITH RECURSIVE chain(referee_id, referrer_id, depth) AS (
                SELECT referee_id, referrer_id, 1 FROM referrals WHERE referee_id = ANY(:ids)
                UNION
                SELECT r.referee_id, r.referrer_id, c.depth + 1
                FROM referrals r JOIN chain c ON r.referee_id = c.referrer_id
                WHERE c.depth < :depth
            )
            SELECT DISTINCT referee_id, referrer_id FROM chain
            """
        ),
        {"ids": ids, "depth": depth},
    )
    return {r.referee_id: r.referrer_id for r in rows}


async def add_referrals(session: AsyncSession, rows: Sequence[tuple[str, str, datetime, str]]) -> None:
    """(referee, referrer, claimed at, source input id); the first referrer of a referee wins."""
    if rows:
        await session.execute(
            text(
                "INSERT INTO referrals (referee_id, referrer_id, claimed_at, source_id) "
                "SELECT * FROM unnest(CAST(:a AS text[]), CAST(:b AS text[]), "
                "CAST(:c AS timestamptz[]), CAST(:d AS text[])) ON CONFLICT DO NOTHING"
            ),
            {
                "a": [r[0] for r in rows],
                "b": [r[1] for r in rows],
                "c": [r[2] for r in rows],
                "d": [r[3] for r in rows],
            },
        )
