"""The notifier's append-mostly records: send outcomes, campaign entries and their conversions,
inbox messages and preference changes (set-based statements; the unit of work commits)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.domain.sends import Conversion, EntryRecord


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    id: str
    send_key: str
    campaign: str
    variant: str
    channel: str
    kind: str
    reason: str
    at: datetime


async def add_outcomes(session: AsyncSession, rows: Sequence[OutcomeRow]) -> None:
    if not rows:
        return
    await session.execute(
        text(
            """
            INSERT INTO outcomes (id, send_key, campaign, variant, channel, kind, reason, at)
            SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:keys AS text[]), CAST(:campaigns AS text[]),
                                 CAST(:variants AS text[]), CAST(:channels AS text[]),
                                 CAST(:kinds AS text[]), CAST(:reasons AS text[]),
                                 CAST(:ats AS timestamptz[]))
            ON CONFLICT (id) DO NOTHING
            """
        ),
        {
            "ids": [r.id for r in rows],
            "keys": [r.send_key for r in rows],
            "campaigns": [r.campaign for r in rows],
            "variants": [r.variant for r in rows],
            "channels": [r.channel for r in rows],
            "kinds": [r.kind for r in rows],
            "reasons": [r.reason for r in rows],
            "ats": [r.at for r in rows],
        },
    )


async def add_entries(session: AsyncSession, entries: Sequence[EntryRecord]) -> None:
    if not entries:
        return
    await session.execute(
        text(
            """
            INSERT INTO entries (campaign, user_id, entered_at, grp, input_id, goal_until)
            SELECT * FROM unnest(CAST(:campaigns AS text[]), CAST(:users AS text[]),
                                 CAST(:ats AS timestamptz[]), CAST(:groups AS text[]),
                                 CAST(:inputs AS text[]), CAST(:untils AS timestamptz[]))
            ON CONFLICT DO NOTHING
            """
        ),
        {
            "campaigns": [e.campaign for e in entries],
            "users": [e.user_id for e in entries],
            "ats": [e.at for e in entries],
            "groups": [e.group for e in entries],
            "inputs": [e.input_id for e in entries],
            "untils": [e.goal_until for e in entries],
        },
    )


async def add_conversions(session: AsyncSession, conversions: Sequence[Conversion]) -> None:
    if not conversions:
        return
    await session.execute(
        text(
            """
            UPDATE entries e SET converted_at = c.at
            FROM unnest(CAST(:campaigns AS text[]), CAST(:users AS text[]),
                        CAST(:entered AS timestamptz[]), CAST(:ats AS timestamptz[]))
                 AS c(campaign, user_id, entered_at, at)
            WHERE e.campaign = c.campaign AND e.user_id = c.user_id AND e.entered_at = c.entered_at
              AND e.converted_at IS NULL
            """
        ),
        {
            "campaigns": [c.campaign for c in conversions],
            "users": [c.user_id for c in conversions],
            "entered": [c.entered_at for c in conversions],
            "ats": [c.at for c in conversions],
        },
    )


@dataclass(frozen=True, slots=True)
class InboxRow:
    send_key: str
    user_id: str
    campaign: str
    title: str
    body: str
    url: str | None
    created_at: datetime


async def add_inbox(session: AsyncSession, rows: Sequence[InboxRow]) -> None:
    if not rows:
        return
    await session.execute(
        text(
            """
            INSERT INTO inbox (send_key, user_id, campaign, title, body, url, created_at)
            SELECT * FROM unnest(CAST(:keys AS text[]), CAST(:users AS text[]), CAST(:campaigns AS text[]),
                                 CAST(:titles AS text[]), CAST(:bodies AS text[]), CAST(:urls AS text[]),
                                 CAST(:ats AS timestamptz[]))
            ON CONFLICT (send_key) DO NOTHING
            """
        ),
        {
            "keys": [r.send_key for r in rows],
            "users": [r.user_id for r in rows],
            "campaigns": [r.campaign for r in rows],
            "titles": [r.title for r in rows],
            "bodies": [r.body for r in rows],
            "urls": [r.url for r in rows],
            "ats": [r.created_at for r in rows],
        },
    )


async def add_preference_change(
    session: AsyncSession, input_id: str, user_id: str, scope: str, subscribed: bool, at: datetime
) -> bool:
    """Record one preference change; False when this input was recorded before (idempotent)."""
    result = await session.execute(
        text(
            "INSERT INTO preference_changes (input_id, user_id, scope, subscribed, at) "
            "VALUES (:id, :user, :scope, :subscribed, :at) ON CONFLICT DO NOTHING RETURNING input_id"
        ),
        {"id": input_id, "user": user_id, "scope": scope, "subscribed": subscribed, "at": at},
    )
    return result.first() is not None
