"""Read-only queries behind the rewards API (no locks): the ledger statement of one user."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class StatementRow:
    """One ledger transaction of a user with what it did to each of their balances."""

    id: str
    kind: str
    at: datetime
    rule_id: str | None
    lot_id: str | None
    reverses: str | None
    reason: str | None
    actor: str | None
    available: int
    pending: int
    held: int
    debt: int


_STATEMENT = text(
    """
    SELECT t.id, t.kind, t.at, t.rule_id, t.lot_id, t.reverses, t.reason, t.actor,
        coalesce(sum(e.amount) FILTER (WHERE e.account_kind = 'available'), 0) AS available,
        coalesce(sum(e.amount) FILTER (WHERE e.account_kind = 'pending'), 0) AS pending,
        coalesce(sum(e.amount) FILTER (WHERE e.account_kind = 'held'), 0) AS held,
        coalesce(sum(e.amount) FILTER (WHERE e.account_kind = 'debt'), 0) AS debt
    FROM ledger_transactions t
    JOIN ledger_entries e ON e.transaction_id = t.id AND e.account_owner = t.user_id
        AND e.account_kind IN ('available', 'pending', 'held', 'debt')
    WHERE t.user_id = :user AND (CAST(:at AS timestamptz) IS NULL OR (t.at, t.id) < (:at, :id))
    GROUP BY t.id
    ORDER BY t.at DESC, t.id DESC
    LIMIT :n
    """
)


async def statement(
    session: AsyncSession, user_id: str, limit: int, before: tuple[datetime, str] | None
) -> list[StatementRow]:
    """Up to `limit` of the user's transactions, newest first, older than `before` (at, id)."""
    at, tx_id = before if before is not None else (None, "")
    rows = await session.execute(_STATEMENT, {"user": user_id, "at": at, "id": tx_id, "n": limit})
    return [
        StatementRow(
            r.id,
            r.kind,
            r.at,
            r.rule_id,
            r.lot_id,
            r.reverses,
            r.reason,
            r.actor,
            int(r.available),
            int(r.pending),
            int(r.held),
            int(r.debt),
        )
        for r in rows
    ]
