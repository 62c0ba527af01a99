"""The `timers` table: arming, cancelling, claiming, and the dead timers operators replay.

A row per (kind, key) with a `due_at`. Scheduling is an upsert, so re-arming a user's deadline
replaces the old one and gives it a clean slate (no attempts, no retry delay, not dead). A timer
whose handler failed carries `attempts`, `last_error` and either `retry_at` (offered again from
then on) or `dead_at` (never offered again until `replay_dead`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.ids import timer_input_id

# session.info key, set by the timer worker around its handler: (kind, key) -> the due_at armed in
# this transaction, or None for a cancelled timer.
ARMED = "shared.runtime.timers.armed"


@dataclass(frozen=True, slots=True)
class Timer:
    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The input id of this firing (`shared.ids.timer_input_id`), for deriving output ids."""
        return timer_input_id(self.kind, self.key, self.due_at)


@dataclass(frozen=True, slots=True)
class DeadTimer:
    """A timer its handler failed on past the bound (or permanently); it fires again after a replay."""

    kind: str
    key: str
    due_at: datetime
    attempts: int
    last_error: str | None
    dead_at: datetime
    payload: dict[str, Any]


_UPSERT = text(
    """
    INSERT INTO timers (kind, key, due_at, payload)
    SELECT * FROM unnest(CAST(:kinds AS text[]), CAST(:keys AS text[]),
                         CAST(:dues AS timestamptz[]), CAST(:payloads AS jsonb[]))
    ON CONFLICT (kind, key) DO UPDATE SET due_at = EXCLUDED.due_at, payload = EXCLUDED.payload,
        attempts = 0, retry_at = NULL, last_error = NULL, dead_at = NULL
    """
)
_CANCEL = text(
    "DELETE FROM timers t USING unnest(CAST(:kinds AS text[]), CAST(:keys AS text[])) AS c(kind, key) "
    "WHERE t.kind = c.kind AND t.key = c.key"
)
NO_FLOOR = datetime.min.replace(tzinfo=UTC)
_OFFERED = "dead_at IS NULL AND (retry_at IS NULL OR retry_at <= :now)"
_COLUMNS = "kind, key, due_at, payload, attempts, retry_at, last_error"
# Claiming is deleting: one statement takes up to :n due rows (oldest first, skipping rows another
# worker holds) and hands them to the handler in the same transaction. A rollback puts them back;
# a commit has spent them. Those the handler leaves unhandled are put back (`REOFFER`).
# `:floor` lets a worker draining a backlog start the index scan where its last batch began:
# from the start it would walk past the index entries of every row fired so far (dead until the
# next vacuum), a cost that grows with the backlog fired.
_CLAIM = text(
    f"""
    WITH claimed AS (
        DELETE FROM timers WHERE ctid = ANY(ARRAY(
            SELECT ctid FROM timers
            WHERE due_at <= :now AND due_at >= :floor AND kind = ANY(:kinds) AND {_OFFERED}
            ORDER BY due_at LIMIT :n
            FOR UPDATE SKIP LOCKED
        ))
        RETURNING {_COLUMNS}
    )
    SELECT {_COLUMNS} FROM claimed ORDER BY due_at
    """
)
# A failed batch's timers, one at a time: the row is locked first (outside the savepoint the
# handler runs in, so a failure can still be recorded on it), then taken like `CLAIM` takes rows.
CLAIM_ONE = text(
    f"""
    SELECT {_COLUMNS} FROM timers
    WHERE kind = :kind AND key = :key AND due_at = :due AND {_OFFERED}
    FOR UPDATE SKIP LOCKED
    """
)
TAKE_ONE = text("DELETE FROM timers WHERE kind = :kind AND key = :key AND due_at = :due")
# Timers the handler did not handle (their user was busy) go back as they were, unless the handler
# armed or cancelled the same (kind, key) meanwhile: its new word wins.
REOFFER = text(
    f"""
    INSERT INTO timers ({_COLUMNS})
    SELECT * FROM unnest(CAST(:kinds AS text[]), CAST(:keys AS text[]), CAST(:dues AS timestamptz[]),
                         CAST(:payloads AS jsonb[]), CAST(:attempts AS integer[]),
                         CAST(:retry_ats AS timestamptz[]), CAST(:errors AS text[]))
    ON CONFLICT (kind, key) DO NOTHING
    """
)
# A timer the handler re-armed to the very instant that just fired has fired for that instant.
DELETE_FIRED = text(
    """
    DELETE FROM timers t
    USING unnest(CAST(:kinds AS text[]), CAST(:keys AS text[]), CAST(:dues AS timestamptz[]))
          AS f(kind, key, due_at)
    WHERE t.kind = f.kind AND t.key = f.key AND t.due_at = f.due_at
    """
)
RECORD_FAILURE = text(
    """
    UPDATE timers SET attempts = :attempts, last_error = :error, retry_at = :retry_at, dead_at = :dead_at
    WHERE kind = :kind AND key = :key AND due_at = :due
    """
)
# Retrying timers are left out: they are offered again at the first poll after their `retry_at`.
NEXT_DUE = text(
    "SELECT min(due_at) FROM timers WHERE kind = ANY(:kinds) AND dead_at IS NULL AND retry_at IS NULL"
)
COUNT_DUE = text(
    "SELECT count(*) FROM timers WHERE due_at <= :now AND kind = ANY(:kinds) AND dead_at IS NULL"
)
COUNT_DEAD = text(
    "SELECT kind, count(*) AS n FROM timers WHERE dead_at IS NOT NULL AND kind = ANY(:kinds) GROUP BY kind"
)
_LIST_DEAD = text(
    """
    SELECT kind, key, due_at, attempts, last_error, dead_at, payload FROM timers
    WHERE dead_at IS NOT NULL AND (CAST(:kind AS text) IS NULL OR kind = :kind)
    ORDER BY dead_at, kind, key LIMIT :limit
    """
)
_REPLAY_DEAD = text(
    """
    UPDATE timers SET dead_at = NULL, attempts = 0, retry_at = NULL
    WHERE dead_at IS NOT NULL AND (CAST(:kind AS text) IS NULL OR kind = :kind)
      AND (CAST(:keys AS text[]) IS NULL OR key = ANY(:keys))
    """
)


async def claim(
    session: AsyncSession, now: datetime, kinds: Sequence[str], n: int, floor: datetime = NO_FLOOR
) -> list[Any]:
    """Take up to `n` timers of `kinds` due at `now` (and not before `floor`) in the session's
    transaction (see `_CLAIM`).

    Rows of `_COLUMNS`, oldest due first, as the driver returned them (index them by position):
    wrapping thousands of rows per batch in SQLAlchemy rows cost more than the rest of the firing.
    """
    params = {"now": now, "floor": floor, "kinds": list(kinds), "n": n}
    result = await session.execute(_CLAIM, params)
    rows: list[Any] = result.cursor.fetchall()  # type: ignore[attr-defined]
    return rows


async def schedule(session: AsyncSession, timers: Sequence[Timer]) -> None:
    """Arm (or re-arm) timers in the caller's transaction; a re-armed timer starts afresh."""
    if not timers:
        return
    armed = session.info.get(ARMED)
    if armed is not None:
        for t in timers:
            armed[(t.kind, t.key)] = t.due_at
    await session.execute(
        _UPSERT,
        {
            "kinds": [t.kind for t in timers],
            "keys": [t.key for t in timers],
            "dues": [t.due_at for t in timers],
            "payloads": [orjson.dumps(t.payload).decode() for t in timers],
        },
    )


async def cancel(session: AsyncSession, kind: str, keys: Sequence[str]) -> None:
    """Disarm timers in the caller's transaction (dead ones included)."""
    if keys:
        armed = session.info.get(ARMED)
        if armed is not None:
            for key in keys:
                armed[(kind, key)] = None
        await session.execute(_CANCEL, {"kinds": [kind] * len(keys), "keys": list(keys)})


async def list_dead(session: AsyncSession, kind: str | None = None, limit: int = 100) -> list[DeadTimer]:
    """Dead timers (of `kind`, or all), the longest dead first."""
    rows = (await session.execute(_LIST_DEAD, {"kind": kind, "limit": limit})).all()
    return [DeadTimer(r.kind, r.key, r.due_at, r.attempts, r.last_error, r.dead_at, r.payload) for r in rows]


async def replay_dead(
    session: AsyncSession, kind: str | None = None, keys: Sequence[str] | None = None
) -> int:
    """Make dead timers (of `kind`, with `keys`, or all) due again with a fresh count; return how many.

    They keep their `due_at` (so their firing's id, and the outputs derived from it, stay the
    same) and their `last_error` until they fire or fail again. The caller commits.
    """
    result = await session.execute(
        _REPLAY_DEAD, {"kind": kind, "keys": list(keys) if keys is not None else None}
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
