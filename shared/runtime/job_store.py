"""The `jobs` table: enqueueing effects, claiming them with a lease, and the failed ones operators replay.

A job is one effect outside the database (a webhook call, an email). Its id is the effect's
idempotency key, so enqueueing the same effect twice — a redelivered message, a re-run batch —
leaves one job, and the receiver gets the same key on every attempt. States:

    queued ──claim──▶ running ──success──▶ succeeded   (purged after the retention)
      ▲                  │ ├──error, attempts left──▶ queued (due after a backoff)
      │                  │ └──PermanentError / no attempts left──▶ failed (kept; listed, replayed)
      └──lease expired───┘   (the worker was lost mid-effect: run again, with the same id)

Times are the database's (`now()`), so the leases of several replicas compare on one clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

DEFAULT_MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Job:
    """An effect to perform: `id` is its idempotency key; `due_at` None means now."""

    id: str
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker holds the lease of; `attempt` counts from 1 (this run included)."""

    id: str
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int


@dataclass(frozen=True, slots=True)
class FailedJob:
    id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


_ENQUEUE = text(
    """
    INSERT INTO jobs (id, kind, payload, due_at, max_attempts)
    SELECT j.id, j.kind, j.payload, coalesce(j.due_at, now()), :max_attempts
    FROM unnest(CAST(:ids AS text[]), CAST(:kinds AS text[]), CAST(:payloads AS jsonb[]),
                CAST(:dues AS timestamptz[])) AS j(id, kind, payload, due_at)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
    """
)
# The kind's bound is written at each claim, so the row shows the bound its attempts ran under.
# A running job whose lease expired is claimed again: its worker was lost mid-effect.
CLAIM = text(
    """
    UPDATE jobs AS j
    SET state = 'running', attempts = j.attempts + 1, max_attempts = k.max_attempts,
        lease_until = now() + make_interval(secs => k.lease), updated_at = now()
    FROM unnest(CAST(:kinds AS text[]), CAST(:leases AS float8[]), CAST(:maxes AS integer[]))
         AS k(kind, lease, max_attempts)
    WHERE j.kind = k.kind AND j.id IN (
        SELECT id FROM jobs
        WHERE state IN ('queued', 'running') AND due_at <= now() AND kind = ANY(:kinds)
          AND (state = 'queued' OR lease_until < now())
        ORDER BY due_at LIMIT :n
        FOR UPDATE SKIP LOCKED)
    RETURNING j.id, j.kind, j.payload, j.attempts, j.max_attempts
    """
)
# Only the holder of the lease records: the job is still running the attempt it claimed.
RECORD = text(
    """
    UPDATE jobs
    SET state = :state, last_error = :error, lease_until = NULL, updated_at = now(),
        due_at = CASE WHEN :state = 'queued' THEN now() + make_interval(secs => :retry_in) ELSE due_at END,
        finished_at = CASE WHEN :state = 'queued' THEN NULL ELSE now() END
    WHERE id = :id AND state = 'running' AND attempts = :attempt
    """
)
NEXT_DUE = text(
    """
    SELECT extract(epoch FROM least(
        (SELECT min(due_at) FROM jobs WHERE state = 'queued' AND kind = ANY(:kinds)),
        (SELECT min(lease_until) FROM jobs WHERE state = 'running' AND kind = ANY(:kinds))) - now())
    """
)
GAUGES = text(
    """
    SELECT kind, count(*) FILTER (WHERE state = 'queued') AS queued,
           count(*) FILTER (WHERE state = 'running') AS running,
           extract(epoch FROM now() - min(due_at) FILTER (WHERE state = 'queued' AND due_at <= now()))
               AS oldest_due
    FROM jobs WHERE state IN ('queued', 'running') AND kind = ANY(:kinds) GROUP BY kind
    """
)
PURGE = text(
    """
    DELETE FROM jobs WHERE id IN (
        SELECT id FROM jobs
        WHERE state = 'succeeded' AND finished_at < now() - make_interval(secs => :retention)
        LIMIT :n FOR UPDATE SKIP LOCKED)
    """
)
_LIST_FAILED = text(
    """
    SELECT id, kind, payload, attempts, max_attempts, last_error, created_at, finished_at FROM jobs
    WHERE state = 'failed' AND (CAST(:kind AS text) IS NULL OR kind = :kind)
    ORDER BY finished_at, id LIMIT :limit
    """
)
_REPLAY_FAILED = text(
    """
    UPDATE jobs SET state = 'queued', attempts = 0, due_at = now(), lease_until = NULL,
        finished_at = NULL, updated_at = now()
    WHERE state = 'failed' AND (CAST(:kind AS text) IS NULL OR kind = :kind)
      AND (CAST(:ids AS text[]) IS NULL OR id = ANY(:ids))
    """
)


async def enqueue(session: AsyncSession, jobs: Sequence[Job]) -> set[str]:
    """Queue `jobs` in the caller's transaction; return the ids newly queued.

    An id already present, in any state (even succeeded or failed), is left as it is: an effect
    happens at most once per idempotency key (within the retention of succeeded jobs).
    """
    if not jobs:
        return set()
    result = await session.execute(
        _ENQUEUE,
        {
            "ids": [j.id for j in jobs],
            "kinds": [j.kind for j in jobs],
            "payloads": [orjson.dumps(j.payload).decode() for j in jobs],
            "dues": [j.due_at for j in jobs],
            "max_attempts": DEFAULT_MAX_ATTEMPTS,
        },
    )
    return set(result.scalars())


async def list_failed(session: AsyncSession, kind: str | None = None, limit: int = 100) -> list[FailedJob]:
    """Failed jobs (of `kind`, or all), the earliest failed first."""
    rows = (await session.execute(_LIST_FAILED, {"kind": kind, "limit": limit})).all()
    return [
        FailedJob(
            r.id, r.kind, r.payload, r.attempts, r.max_attempts, r.last_error, r.created_at, r.finished_at
        )
        for r in rows
    ]


async def replay_failed(
    session: AsyncSession, ids: Sequence[str] | None = None, kind: str | None = None
) -> int:
    """Queue failed jobs (with `ids`, of `kind`, or all) again, due now, with a fresh count.

    They keep their id, so the receiver can still dedupe; `last_error` stays until the next
    outcome. Return how many; the caller commits.
    """
    result = await session.execute(
        _REPLAY_FAILED, {"kind": kind, "ids": list(ids) if ids is not None else None}
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
