"""The rewards service's PostgreSQL repository: set-based statements, one round trip per table.

It never commits; the unit of work (the runtime's transaction per batch, a timer batch, or one
API request) does. Every write path locks the users it writes for first (`lock_users`, the
shared per-user lock), then the budgets it may draw on (`lock_budgets`), always in that order
and each in key order, so concurrent transactions wait for each other instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

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
