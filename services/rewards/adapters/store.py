"""The rewards service's PostgreSQL repository: set-based statements, one round trip per table.

It never commits; the unit of work (the runtime's transaction per batch, a timer batch, or one
API request) does. Every write path locks the users it writes for first (`lock_users`, the
shared per-user lock), then the budgets it may draw on (`lock_budgets`), always in that order
and each in key order, so concurrent transactions wait for each other instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.adapters.state_cache import StateCache
from services.rewards.domain.ledger import Lot
from services.rewards.domain.state import UserRewardsState
from services.rewards.domain.state_json import from_dict, to_json
from shared.runtime.locks import RowLock, lock_rows

ACCOUNT_LOCK: Final = RowLock(
    table="accounts",
    key="user_id",
    columns=("version", "state IS NULL AS empty"),
    # A placeholder row (state NULL) holds a first-seen user's lock; unfilled ones are dropped.
    insert=(
        "INSERT INTO accounts (user_id) SELECT u FROM unnest(CAST(:keys AS text[])) AS u "
        "ON CONFLICT (user_id) DO NOTHING RETURNING user_id"
    ),
)
"""The rewards service's per-user lock (`shared.runtime.locks`): the user's `accounts` row."""


@dataclass(slots=True)
class LockedUsers:
    """Users locked for one unit of work. `states`: user id → state (None: no state yet, a
    placeholder row, possibly `created` just now); `versions`: their stored versions.
    `busy`/`missing`: see `shared.runtime.locks`."""

    states: dict[str, UserRewardsState | None]
    versions: dict[str, int] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)
    busy: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)


async def lock_users(
    session: AsyncSession,
    user_ids: Iterable[str],
    *,
    create: bool = False,
    skip_locked: bool = False,
    cache: StateCache | None = None,
) -> LockedUsers:
    """Lock the users' rows (the shared per-user lock) and read their states: from `cache` when
    it holds the stored version, else from the row."""
    locked = await lock_rows(session, ACCOUNT_LOCK, user_ids, create=create, skip_locked=skip_locked)
    states: dict[str, UserRewardsState | None] = {}
    versions = {uid: int(r.version) for uid, r in locked.rows.items()}
    fetch = []
    for uid, r in locked.rows.items():
        cached = cache.take(uid, versions[uid]) if cache is not None and not r.empty else None
        states[uid] = cached
        if cached is None and not r.empty:
            fetch.append(uid)
    if fetch:
        rows = await session.execute(
            text("SELECT user_id, state FROM accounts WHERE user_id = ANY(:ids)"), {"ids": fetch}
        )
        states.update({r.user_id: from_dict(r.state) for r in rows})
    states.update(dict.fromkeys(locked.created))
    versions.update(dict.fromkeys(locked.created, 0))
    return LockedUsers(states, versions, locked.created, locked.busy, locked.missing)


async def read_state(session: AsyncSession, user_id: str) -> UserRewardsState | None:
    """The user's last committed state, without a lock (None: unknown user)."""
    row = (
        await session.execute(text("SELECT state FROM accounts WHERE user_id = :u"), {"u": user_id})
    ).first()
    return from_dict(row.state) if row is not None and row.state else None


_SAVE_ACCOUNTS = text(
    """
    UPDATE accounts a SET state = s.state, available = s.available, pending = s.pending,
        held = s.held, debt = s.debt, tier = s.tier, version = a.version + 1, updated_at = now()
    FROM unnest(CAST(:ids AS text[]), CAST(:states AS jsonb[]), CAST(:available AS bigint[]),
                CAST(:pending AS bigint[]), CAST(:held AS bigint[]), CAST(:debt AS bigint[]),
                CAST(:tiers AS text[]))
         AS s(user_id, state, available, pending, held, debt, tier)
    WHERE a.user_id = s.user_id
    """
)


async def save_accounts(
    session: AsyncSession, states: Sequence[UserRewardsState], tier_names: Sequence[str]
) -> None:
    """Store each state with its balances (always the sum of the user's entries); each saved
    row's version goes up by one."""
    if not states:
        return
    b = [s.book.balances for s in states]
    await session.execute(
        _SAVE_ACCOUNTS,
        {
            "ids": [s.user_id for s in states],
            "states": [to_json(s).decode() for s in states],
            "available": [x.available for x in b],
            "pending": [x.pending for x in b],
            "held": [x.held for x in b],
            "debt": [x.debt for x in b],
            "tiers": [tier_names[s.tier.level] if tier_names else None for s in states],
        },
    )


async def drop_placeholders(session: AsyncSession, user_ids: Iterable[str]) -> None:
    ids = list(user_ids)
    if ids:
        await session.execute(
            text("DELETE FROM accounts WHERE user_id = ANY(:ids) AND state IS NULL"), {"ids": ids}
        )


# -- budgets ----------------------------------------------------------------------------------

_LOCK_BUDGETS = text(
    """
    INSERT INTO budgets (rule_id, limit_points)
    SELECT * FROM unnest(CAST(:rules AS text[]), CAST(:limits AS bigint[]))
    ON CONFLICT (rule_id) DO UPDATE SET limit_points = EXCLUDED.limit_points
    RETURNING rule_id, spent
    """
)


async def lock_budgets(session: AsyncSession, limits: Mapping[str, int]) -> dict[str, int]:
    """Lock the budget rows of `limits`' rules (created on first use, limits from the config) in
    rule order; return each rule's remaining points (limit - spent)."""
    rules = sorted(limits)
    if not rules:
        return {}
    rows = await session.execute(_LOCK_BUDGETS, {"rules": rules, "limits": [limits[r] for r in rules]})
    return {r.rule_id: limits[r.rule_id] - int(r.spent) for r in rows}


async def spend_budgets(session: AsyncSession, consumed: Mapping[str, int]) -> None:
    """Add `consumed` (negative: a reversal gave points back) to each locked budget's spend."""
    rules = sorted(r for r, n in consumed.items() if n)
    if rules:
        await session.execute(
            text(
                "UPDATE budgets b SET spent = b.spent + c.n, updated_at = now() "
                "FROM unnest(CAST(:rules AS text[]), CAST(:ns AS bigint[])) AS c(rule_id, n) "
                "WHERE b.rule_id = c.rule_id"
            ),
            {"rules": rules, "ns": [consumed[r] for r in rules]},
        )


async def budget_rows(session: AsyncSession) -> dict[str, tuple[int, int]]:
    """Rule id → (limit, spent) of every stored budget (no lock)."""
    rows = await session.execute(text("SELECT rule_id, limit_points, spent FROM budgets"))
    return {r.rule_id: (int(r.limit_points), int(r.spent)) for r in rows}


# -- referrals --------------------------------------------------------------------------------


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


# -- ledger and lots --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransactionRow:
    id: str
    user_id: str
    kind: str
    at: datetime
    rule_id: str | None
    lot_id: str | None
    reverses: str | None
    source_id: str
    award_key: str | None
    reason: str | None
    actor: str | None
    entries: tuple[tuple[str, str, int], ...]  # (account kind, owner, amount)


_ADD_TRANSACTIONS = text(
    """
    INSERT INTO ledger_transactions
        (id, user_id, kind, at, rule_id, lot_id, reverses, source_id, award_key, reason, actor)
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:users AS text[]), CAST(:kinds AS text[]),
        CAST(:ats AS timestamptz[]), CAST(:rules AS text[]), CAST(:lots AS text[]),
        CAST(:reverses AS text[]), CAST(:sources AS text[]), CAST(:keys AS text[]),
        CAST(:reasons AS text[]), CAST(:actors AS text[]))
    ON CONFLICT DO NOTHING
    """
)
_ADD_ENTRIES = text(
    """
    INSERT INTO ledger_entries (transaction_id, account_kind, account_owner, amount)
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:kinds AS text[]), CAST(:owners AS text[]),
                         CAST(:amounts AS bigint[]))
    ON CONFLICT DO NOTHING
    """
)


async def add_transactions(session: AsyncSession, rows: Sequence[TransactionRow]) -> None:
    """Append transactions and their entries (an id already recorded is left as it is)."""
    if not rows:
        return
    await session.execute(
        _ADD_TRANSACTIONS,
        {
            "ids": [r.id for r in rows],
            "users": [r.user_id for r in rows],
            "kinds": [r.kind for r in rows],
            "ats": [r.at for r in rows],
            "rules": [r.rule_id for r in rows],
            "lots": [r.lot_id for r in rows],
            "reverses": [r.reverses for r in rows],
            "sources": [r.source_id for r in rows],
            "keys": [r.award_key for r in rows],
            "reasons": [r.reason for r in rows],
            "actors": [r.actor for r in rows],
        },
    )
    entries = [(r.id, *e) for r in rows for e in r.entries]
    await session.execute(
        _ADD_ENTRIES,
        {
            "ids": [e[0] for e in entries],
            "kinds": [e[1] for e in entries],
            "owners": [e[2] for e in entries],
            "amounts": [e[3] for e in entries],
        },
    )


_UPSERT_LOTS = text(
    """
    INSERT INTO lots (id, user_id, rule_id, amount, remaining, earned_at, expires_at, pending,
                      reversed, expired_amount, expired)
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:users AS text[]), CAST(:rules AS text[]),
        CAST(:amounts AS bigint[]), CAST(:remaining AS bigint[]), CAST(:earned AS timestamptz[]),
        CAST(:expires AS timestamptz[]), CAST(:pending AS boolean[]), CAST(:reversed AS bigint[]),
        CAST(:expired_amount AS bigint[]), CAST(:expired AS boolean[]))
    ON CONFLICT (id) DO UPDATE SET remaining = EXCLUDED.remaining, pending = EXCLUDED.pending,
        reversed = EXCLUDED.reversed, expired_amount = EXCLUDED.expired_amount,
        expired = EXCLUDED.expired, updated_at = now()
    """
)


async def upsert_lots(session: AsyncSession, rows: Sequence[tuple[str, Lot]]) -> None:
    """(user id, lot) of every lot created or changed."""
    if not rows:
        return
    lots = [lot for _, lot in rows]
    await session.execute(
        _UPSERT_LOTS,
        {
            "ids": [x.id for x in lots],
            "users": [u for u, _ in rows],
            "rules": [x.rule_id for x in lots],
            "amounts": [x.amount for x in lots],
            "remaining": [x.remaining for x in lots],
            "earned": [x.earned_at for x in lots],
            "expires": [x.expires_at for x in lots],
            "pending": [x.pending for x in lots],
            "reversed": [x.reversed for x in lots],
            "expired_amount": [x.expired_amount for x in lots],
            "expired": [x.expired for x in lots],
        },
    )


# -- idempotent API requests --------------------------------------------------------------------


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
