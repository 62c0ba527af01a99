"""API requests recorded under their Idempotency-Key: redemptions (with their hold) and adjustments."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """A request recorded under its Idempotency-Key: what it asked and what it was answered."""

    request_hash: str
    status_code: int
    response: dict[str, Any]
    hold_id: str | None = None
    state: str | None = None
    points: int = 0


async def find_redemption(session: AsyncSession, user_id: str, key: str) -> StoredRequest | None:
    row = (
        await session.execute(
            text(
                "SELECT request_hash, status_code, response, hold_id, state, points FROM redemptions "
                "WHERE user_id = :u AND idempotency_key = :k"
            ),
            {"u": user_id, "k": key},
        )
    ).first()
    if row is None:
        return None
    return StoredRequest(
        row.request_hash, row.status_code, row.response, row.hold_id, row.state, int(row.points)
    )


async def save_redemption(
    session: AsyncSession,
    user_id: str,
    key: str,
    stored: StoredRequest,
    expires_at: datetime | None,
) -> None:
    await session.execute(
        text(
            """
            INSERT INTO redemptions (user_id, idempotency_key, request_hash, hold_id, points, state,
                                     status_code, response, expires_at)
            VALUES (:u, :k, :h, :hold, :points, :state, :code, CAST(:response AS jsonb), :exp)
            ON CONFLICT (user_id, idempotency_key) DO UPDATE SET state = EXCLUDED.state,
                status_code = EXCLUDED.status_code, response = EXCLUDED.response, updated_at = now()
            """
        ),
        {
            "u": user_id,
            "k": key,
            "h": stored.request_hash,
            "hold": stored.hold_id or "",
            "points": stored.points,
            "state": stored.state or "refused",
            "code": stored.status_code,
            "response": orjson.dumps(stored.response).decode(),
            "exp": expires_at,
        },
    )


async def mark_holds_expired(session: AsyncSession, hold_ids: Sequence[str]) -> None:
    """Redemptions whose hold a timer released (not confirmed in time) end `expired`."""
    if hold_ids:
        await session.execute(
            text(
                "UPDATE redemptions SET state = 'expired', "
                "response = jsonb_set(response, '{state}', '\"expired\"'), updated_at = now() "
                "WHERE hold_id = ANY(:ids) AND state = 'held'"
            ),
            {"ids": list(hold_ids)},
        )


async def find_adjustment(session: AsyncSession, user_id: str, key: str) -> StoredRequest | None:
    row = (
        await session.execute(
            text(
                "SELECT request_hash, status_code, response FROM adjustments "
                "WHERE user_id = :u AND idempotency_key = :k"
            ),
            {"u": user_id, "k": key},
        )
    ).first()
    return None if row is None else StoredRequest(row.request_hash, row.status_code, row.response)


async def save_adjustment(session: AsyncSession, user_id: str, key: str, stored: StoredRequest) -> None:
    await session.execute(
        text(
            "INSERT INTO adjustments (user_id, idempotency_key, request_hash, status_code, response) "
            "VALUES (:u, :k, :h, :code, CAST(:response AS jsonb)) ON CONFLICT DO NOTHING"
        ),
        {
            "u": user_id,
            "k": key,
            "h": stored.request_hash,
            "code": stored.status_code,
            "response": orjson.dumps(stored.response).decode(),
        },
    )
