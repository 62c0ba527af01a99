"""The `timers` table: arming, cancelling, claiming, and the dead timers operators replay.

A row per (kind, key) with a `due_at`. Scheduling is an upsert, so re-arming a user's deadline
replaces the old one and gives it a clean slate (no attempts, no retry delay, not dead). A timer
whose handler failed carries `attempts`, `last_error` and either `retry_at` (offered again from
then on) or `dead_at` (never offered again until `replay_dead`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.ids import timer_input_id

ARMED = "shared.runtime.timers.armed"  # session.info key: (kind, key) -> due_at armed in this transaction


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
_OFFERED = "dead_at IS NULL AND (retry_at IS NULL OR retry_at <= :now)"
CLAIM = text(
    f"""
    SELECT kind, key, due_at, payload, attempts FROM timers
    WHERE due_at <= :now AND kind = ANY(:kinds) AND {_OFFERED}
    ORDER BY due_at LIMIT :n
    FOR UPDATE SKIP LOCKED
    """
)
CLAIM_ONE = text(
    f"""
    SELECT kind, key, due_at, payload, attempts FROM timers
    WHERE kind = :kind AND key = :key AND due_at = :due AND {_OFFERED}
    FOR UPDATE SKIP LOCKED
    """
)
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


async def schedule(session: AsyncSession, timers: Sequence[Timer]) -> None:
    """Arm (or re-arm) timers in the caller's transaction; a re-armed timer starts afresh."""
    if not timers:
        return
    armed = session.info.setdefault(ARMED, {})
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
        if armed:
            for key in keys:
                armed.pop((kind, key), None)
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
