"""The notifier's PostgreSQL store (SQLAlchemy 2 async, set-based statements; never commits).

Tables (migrations/versions/0001): `users` (the projection, and the per-user lock row) and
`sends` (one row per send key: planned send, state, last reason) here; `outcomes`, `entries`,
`inbox` and `preference_changes` in `records.py`. The unit of work (the runner's, a timer worker's, a job's, or a route's
transaction) commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.domain.projection import Projection
from services.notifier.domain.projection_json import from_json, to_json
from services.notifier.domain.sends import PlannedSend
from shared.runtime.locks import RowLock, lock_rows

USERS = RowLock(
    table="users",
    key="user_id",
    columns=("projection",),
    insert=(
        "INSERT INTO users (user_id) SELECT k FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k "
        "ON CONFLICT DO NOTHING RETURNING user_id"
    ),
)


@dataclass(slots=True)
class LockedUsers:
    """The users locked by this transaction and their projections (None: never stored)."""

    projections: dict[str, Projection | None]
    busy: set[str]
    missing: set[str]


async def lock_users(
    session: AsyncSession, user_ids: Iterable[str], *, create: bool = True, skip_locked: bool = False
) -> LockedUsers:
    """Lock the users' rows (creating them for first-seen users when `create`) and read them."""
    locked = await lock_rows(session, USERS, user_ids, create=create, skip_locked=skip_locked)
    projections: dict[str, Projection | None] = {k: None for k in locked.created}
    for key, row in locked.rows.items():
        projections[key] = from_json(row.projection) if row.projection else None
    return LockedUsers(projections, locked.busy, locked.missing)


_SAVE_USERS = text(
    """
    UPDATE users u SET projection = v.p, updated_at = now()
    FROM unnest(CAST(:ids AS text[]), CAST(:ps AS jsonb[])) AS v(id, p)
    WHERE u.user_id = v.id
    """
)


async def save_projections(session: AsyncSession, projections: Sequence[Projection]) -> None:
    if not projections:
        return
    await session.execute(
        _SAVE_USERS,
        {
            "ids": [p.user_id for p in projections],
            "ps": [orjson.dumps(to_json(p)).decode() for p in projections],
        },
    )


# -- planned sends ----------------------------------------------------------------------------


def planned_json(planned: PlannedSend) -> dict[str, Any]:
    out = asdict(planned)
    for f in fields(planned):
        value = out[f.name]
        if isinstance(value, datetime):
            out[f.name] = value.isoformat(timespec="microseconds")
    return out


def planned_from_json(data: dict[str, Any]) -> PlannedSend:
    values = dict(data)
    for name in ("trigger_at", "due_at", "expires_at", "expiring_at"):
        if values.get(name) is not None:
            values[name] = datetime.fromisoformat(values[name])
    return PlannedSend(**values)


@dataclass(frozen=True, slots=True)
class SendRow:
    send_key: str
    user_id: str
    campaign: str
    variant: str
    channel: str
    state: str
    reason: str = ""
    planned: PlannedSend | None = None
    message: dict[str, Any] | None = None
    received_at: datetime | None = None
    due_at: datetime | None = None
    sent_at: datetime | None = None


_UPSERT_SENDS = text(
    """
    INSERT INTO sends (send_key, user_id, campaign, variant, channel, state, reason, planned,
                       message, received_at, due_at, sent_at)
    SELECT * FROM unnest(CAST(:keys AS text[]), CAST(:users AS text[]), CAST(:campaigns AS text[]),
                         CAST(:variants AS text[]), CAST(:channels AS text[]), CAST(:states AS text[]),
                         CAST(:reasons AS text[]), CAST(:planned AS jsonb[]), CAST(:messages AS jsonb[]),
                         CAST(:received AS timestamptz[]), CAST(:dues AS timestamptz[]),
                         CAST(:sent AS timestamptz[]))
    ON CONFLICT (send_key) DO UPDATE SET
        state = EXCLUDED.state, reason = EXCLUDED.reason,
        planned = coalesce(EXCLUDED.planned, sends.planned),
        message = coalesce(EXCLUDED.message, sends.message),
        received_at = coalesce(sends.received_at, EXCLUDED.received_at),
        due_at = coalesce(EXCLUDED.due_at, sends.due_at),
        sent_at = coalesce(EXCLUDED.sent_at, sends.sent_at), updated_at = now()
    """
)


async def upsert_sends(session: AsyncSession, rows: Sequence[SendRow]) -> None:
    if not rows:
        return

    def dumps(value: dict[str, Any] | None) -> str | None:
        return None if value is None else orjson.dumps(value).decode()

    await session.execute(
        _UPSERT_SENDS,
        {
            "keys": [r.send_key for r in rows],
            "users": [r.user_id for r in rows],
            "campaigns": [r.campaign for r in rows],
            "variants": [r.variant for r in rows],
            "channels": [r.channel for r in rows],
            "states": [r.state for r in rows],
            "reasons": [r.reason for r in rows],
            "planned": [dumps(planned_json(r.planned)) if r.planned else None for r in rows],
            "messages": [dumps(r.message) for r in rows],
            "received": [r.received_at for r in rows],
            "dues": [r.due_at for r in rows],
            "sent": [r.sent_at for r in rows],
        },
    )


@dataclass(frozen=True, slots=True)
class StoredSend:
    state: str
    planned: PlannedSend | None
    received_at: datetime | None


async def get_sends(session: AsyncSession, keys: Sequence[str]) -> dict[str, StoredSend]:
    if not keys:
        return {}
    rows = await session.execute(
        text("SELECT send_key, state, planned, received_at FROM sends WHERE send_key = ANY(:keys)"),
        {"keys": list(keys)},
    )
    return {
        r.send_key: StoredSend(r.state, planned_from_json(r.planned) if r.planned else None, r.received_at)
        for r in rows
    }


async def record_attempt(
    session: AsyncSession,
    send_key: str,
    state: str | None,
    reason: str,
    attempts: int,
    sent_at: datetime | None,
) -> None:
    """A channel attempt's result on the send's row (`state` None: unchanged, a retry is due)."""
    await session.execute(
        text(
            "UPDATE sends SET state = coalesce(:state, state), reason = :reason, attempts = :attempts, "
            "sent_at = coalesce(:sent_at, sent_at), updated_at = now() WHERE send_key = :key"
        ),
        {"state": state, "reason": reason, "attempts": attempts, "sent_at": sent_at, "key": send_key},
    )
