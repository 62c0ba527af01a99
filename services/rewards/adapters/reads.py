"""Read-only queries behind the rewards API (no locks): the ledger statement of one user, and the
points economy over the whole ledger (`GET /v1/economy`)."""

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


@dataclass(frozen=True, slots=True)
class RuleTotals:
    """Points one rule awarded, reversed and saw expire, over the whole ledger."""

    awarded: int = 0
    reversed: int = 0
    expired: int = 0


@dataclass(frozen=True, slots=True)
class Economy:
    """The points economy: totals awarded, redeemed (confirmed) and expired, and per rule."""

    awarded: int
    redeemed: int
    expired: int
    by_rule: dict[str, RuleTotals]


_ECONOMY = text(
    """
    SELECT t.kind, e.account_kind, e.account_owner, t.rule_id, sum(e.amount) AS amount
    FROM ledger_entries e
    JOIN ledger_transactions t ON t.id = e.transaction_id
    WHERE e.account_kind IN ('rule', 'expiry', 'redemption')
    GROUP BY t.kind, e.account_kind, e.account_owner, t.rule_id
    """
)


async def economy(session: AsyncSession) -> Economy:
    """Sum the ledger's movements on the rule accounts (awards drawn, reversals given back) and
    into the expiry and redemption sinks. Expiry of a released hold's lapsed points has no rule."""
    awarded = redeemed = expired = 0
    rules: dict[str, dict[str, int]] = {}
    for r in await session.execute(_ECONOMY):
        amount = int(r.amount)
        if r.account_kind == "rule":
            own = rules.setdefault(r.account_owner, {"awarded": 0, "reversed": 0, "expired": 0})
            if r.kind == "award":
                own["awarded"] -= amount
                awarded -= amount
            elif r.kind == "reversal":
                own["reversed"] += amount
        elif r.account_kind == "expiry":
            expired += amount
            if r.rule_id is not None:
                rules.setdefault(r.rule_id, {"awarded": 0, "reversed": 0, "expired": 0})["expired"] += amount
        elif r.kind == "confirm":
            redeemed += amount
    by_rule = {rule: RuleTotals(**totals) for rule, totals in sorted(rules.items())}
    return Economy(awarded, redeemed, expired, by_rule)
