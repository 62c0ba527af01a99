"""The segmenter's PostgreSQL repository. Set-based statements: one round trip per table per batch.

It never commits; the runtime's unit of work (one transaction per batch) does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.runtime.locks import RowLock, lock_rows


@dataclass(frozen=True, slots=True)
class ProfileRow:
    user_id: str
    state: bytes
    """The state's stored form (`UserState.to_json`)."""
    stage: str
    activated: bool
    first_seen: datetime
    last_activity_at: datetime | None


@dataclass(frozen=True, slots=True)
class HistoryRow:
    event_id: str
    user_id: str
    from_stage: str | None
    to_stage: str
    reason: str
    at: datetime


async def resolve_identities(session: AsyncSession, anonymous_ids: Iterable[str]) -> dict[str, str]:
    ids = list(set(anonymous_ids))
    if not ids:
        return {}
    rows = await session.execute(
        text("SELECT anonymous_id, user_id FROM identities WHERE anonymous_id = ANY(:ids)"), {"ids": ids}
    )
    return {r.anonymous_id: r.user_id for r in rows}


async def link_identities(session: AsyncSession, links: Sequence[tuple[str, str]]) -> None:
    """Record that each anonymous id belongs to its user id; the first link of an id wins."""
    if links:
        await session.execute(
            text(
                "INSERT INTO identities (anonymous_id, user_id) "
                "SELECT * FROM unnest(CAST(:anons AS text[]), CAST(:users AS text[])) ON CONFLICT DO NOTHING"
            ),
            {"anons": [a for a, _ in links], "users": [u for _, u in links]},
        )


PROFILE_LOCK: Final = RowLock(
    table="profiles",
    key="user_id",
    columns=("state", "stage", "merged_into"),
    # A placeholder row holds a first-seen user's lock; `drop_placeholders` removes unfilled ones.
    insert=(
        "INSERT INTO profiles (user_id, state, stage, first_seen) "
        "SELECT u, ''::bytea, 'new', :now FROM unnest(CAST(:keys AS text[])) AS u "
        "ON CONFLICT (user_id) DO NOTHING RETURNING user_id"
    ),
)
"""The segmenter's per-user lock (`shared.runtime.locks`): a user's profile row."""


@dataclass(slots=True)
class LockedProfiles:
    """Profiles locked for one unit of work.

    `states`: user id → stored state, as stored (`decode_state` reads it; the caller decodes,
    so it decides when the work is done), or None: a row without state yet, a placeholder
    created just now — listed in `created` — or a profile merged into another. `stages`: the stored stage
    of every row counted in `stage_counts` (existing and not merged). `busy`: rows another
    transaction holds (`skip_locked` only). `missing`: ids with no row at all (`skip_locked`
    only; without it a placeholder is created).
    """

    states: dict[str, bytes | None]
    stages: dict[str, str] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)
    busy: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)


async def lock_profiles(
    session: AsyncSession, user_ids: Iterable[str], now: datetime, *, skip_locked: bool = False
) -> LockedProfiles:
    """Lock the users' rows under the shared per-user lock rule (`shared.runtime.locks`).

    Without `skip_locked`, a user never seen gets a placeholder row (to hold the lock; the caller
    deletes placeholders it did not fill, see `drop_placeholders`). With `skip_locked` (the timer
    path, which must never wait on an event batch, so the two can never deadlock) nothing is
    created and users are reported busy or missing instead.
    """
    locked = await lock_rows(
        session, PROFILE_LOCK, user_ids, create=not skip_locked, skip_locked=skip_locked, params={"now": now}
    )
    states: dict[str, bytes | None] = {}
    stages: dict[str, str] = {}
    for uid, r in locked.rows.items():
        if r.merged_into is None:
            states[uid] = r.state or None
            stages[uid] = r.stage
        else:
            states[uid] = None
    states.update(dict.fromkeys(locked.created))
    return LockedProfiles(states, stages, locked.created, locked.busy, locked.missing)


def decode_state(state: bytes | None) -> dict[str, Any] | None:
    """A stored state's JSON form; None for a placeholder (empty; `{}` before revision 0004)."""
    if not state:
        return None
    decoded: dict[str, Any] | None = orjson.loads(state) or None
    return decoded


async def drop_placeholders(session: AsyncSession, user_ids: Iterable[str]) -> None:
    ids = list(user_ids)
    if ids:
        await session.execute(text("DELETE FROM profiles WHERE user_id = ANY(:ids)"), {"ids": ids})


async def save_profiles(session: AsyncSession, rows: Sequence[ProfileRow]) -> None:
    if not rows:
        return
    await session.execute(
        text(
            """
            UPDATE profiles p SET state = u.state, stage = u.stage, activated = u.activated,
                   first_seen = u.first_seen, last_activity_at = u.last_activity_at, updated_at = now()
            FROM unnest(CAST(:ids AS text[]), CAST(:states AS bytea[]), CAST(:stages AS text[]),
                        CAST(:activated AS boolean[]), CAST(:first AS timestamptz[]),
                        CAST(:last AS timestamptz[]))
                 AS u(user_id, state, stage, activated, first_seen, last_activity_at)
            WHERE p.user_id = u.user_id
            """
        ),
        {
            "ids": [r.user_id for r in rows],
            "states": [r.state for r in rows],
            "stages": [r.stage for r in rows],
            "activated": [r.activated for r in rows],
            "first": [r.first_seen for r in rows],
            "last": [r.last_activity_at for r in rows],
        },
    )


async def mark_merged(session: AsyncSession, merges: Sequence[tuple[str, str]]) -> None:
    """Anonymous profiles folded into users' (`(anonymous_id, user_id)` in the order they
    happened): kept for audit, hidden from populations; their history, activity days, NPS
    answers and segment rows move to (or leave with) the user.

    Set-based when no id is both merged and merged into within `merges` (the usual case);
    a chain (a user id itself aliased onward in the same batch) is applied merge by merge,
    so rows end where applying the merges in order puts them.
    """
    if not merges:
        return
    sources = [a for a, _ in merges]
    if len(set(sources)) != len(sources) or set(sources) & {u for _, u in merges}:
        for merge in merges:
            await _mark_merged(session, [merge])
        return
    await _mark_merged(session, merges)


# Each statement also filters the merged ids with `= ANY(:anons)`, so the planner looks them up
# by index instead of hashing the whole table against the (estimated) 100 rows of unnest.
_MERGE_STATEMENTS = (
    "UPDATE profiles p SET merged_into = m.u, state = ''::bytea FROM {m} "
    "WHERE p.user_id = m.a AND p.user_id = ANY(:anons)",
    "UPDATE stage_history h SET user_id = m.u FROM {m} WHERE h.user_id = m.a AND h.user_id = ANY(:anons)",
    "INSERT INTO activity_days (user_id, day) SELECT m.u, d.day FROM activity_days d JOIN {m} "
    "ON d.user_id = m.a WHERE d.user_id = ANY(:anons) ON CONFLICT DO NOTHING",
    "DELETE FROM activity_days WHERE user_id = ANY(:anons)",
    "UPDATE nps_responses r SET user_id = m.u FROM {m} WHERE r.user_id = m.a AND r.user_id = ANY(:anons)",
    "DELETE FROM segment_members WHERE user_id = ANY(:anons)",
)
_MERGES = "unnest(CAST(:anons AS text[]), CAST(:users AS text[])) AS m(a, u)"


async def _mark_merged(session: AsyncSession, merges: Sequence[tuple[str, str]]) -> None:
    """Apply `merges`, none of whose sources is another's target."""
    params = {"anons": [a for a, _ in merges], "users": [u for _, u in merges]}
    for statement in _MERGE_STATEMENTS:
        await session.execute(text(statement.replace("{m}", _MERGES)), params)


async def add_history(session: AsyncSession, rows: Sequence[HistoryRow]) -> None:
    if not rows:
        return
    await session.execute(
        text(
            """
            INSERT INTO stage_history (event_id, user_id, from_stage, to_stage, reason, at)
            SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:users AS text[]), CAST(:froms AS text[]),
                                 CAST(:tos AS text[]), CAST(:reasons AS text[]), CAST(:ats AS timestamptz[]))
            ON CONFLICT (event_id) DO NOTHING
            """
        ),
        {
            "ids": [r.event_id for r in rows],
            "users": [r.user_id for r in rows],
            "froms": [r.from_stage for r in rows],
            "tos": [r.to_stage for r in rows],
            "reasons": [r.reason for r in rows],
            "ats": [r.at for r in rows],
        },
    )


@dataclass(frozen=True, slots=True)
class NpsRow:
    event_id: str
    user_id: str
    score: int
    at: datetime


async def add_nps_responses(session: AsyncSession, rows: Sequence[NpsRow]) -> None:
    """Record NPS answers; an answer already recorded (same event id) is left as it is."""
    if not rows:
        return
    await session.execute(
        text(
            "INSERT INTO nps_responses (event_id, user_id, score, at) "
            "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:users AS text[]), "
            "CAST(:scores AS smallint[]), CAST(:ats AS timestamptz[])) ON CONFLICT (event_id) DO NOTHING"
        ),
        {
            "ids": [r.event_id for r in rows],
            "users": [r.user_id for r in rows],
            "scores": [r.score for r in rows],
            "ats": [r.at for r in rows],
        },
    )


async def add_activity_days(session: AsyncSession, days: Sequence[tuple[str, date]]) -> None:
    if not days:
        return
    await session.execute(
        text(
            "INSERT INTO activity_days (user_id, day) "
            "SELECT * FROM unnest(CAST(:users AS text[]), CAST(:days AS date[])) ON CONFLICT DO NOTHING"
        ),
        {"users": [u for u, _ in days], "days": [d for _, d in days]},
    )


async def set_segments(
    session: AsyncSession, entered: Sequence[tuple[str, str, datetime]], exited: Sequence[tuple[str, str]]
) -> None:
    """Apply segment membership changes: `entered` (user, segment, since), `exited` (user, segment)."""
    if exited:
        await session.execute(
            text(
                "DELETE FROM segment_members m USING unnest(CAST(:users AS text[]), CAST(:segs AS text[])) "
                "AS x(user_id, segment) WHERE m.user_id = x.user_id AND m.segment = x.segment"
            ),
            {"users": [u for u, _ in exited], "segs": [s for _, s in exited]},
        )
    if entered:
        await session.execute(
            text(
                "INSERT INTO segment_members (user_id, segment, since) "
                "SELECT * FROM unnest(CAST(:users AS text[]), CAST(:segs AS text[]), "
                "CAST(:since AS timestamptz[])) ON CONFLICT DO NOTHING"
            ),
            {
                "users": [u for u, _, _ in entered],
                "segs": [s for _, s, _ in entered],
                "since": [t for _, _, t in entered],
            },
        )


async def add_stage_counts(session: AsyncSession, deltas: dict[str, int]) -> None:
    """Record how many users entered (positive) or left (negative) each stage in this unit of
    work: appended rows, so concurrent writers never wait on one counter row."""
    changed = {stage: n for stage, n in deltas.items() if n}
    if changed:
        await session.execute(
            text(
                "INSERT INTO stage_counts (stage, n) "
                "SELECT * FROM unnest(CAST(:stages AS text[]), CAST(:ns AS bigint[]))"
            ),
            {"stages": list(changed), "ns": list(changed.values())},
        )


async def armed_timers(session: AsyncSession, kind: str, keys: Sequence[str]) -> dict[str, datetime]:
    """key → due instant of the `kind` timers (the runtime's `timers` table) of `keys` that are
    armed and offered normally (not retrying, not dead). Read after the keys' profiles are
    locked: any firing that changed them has committed by then."""
    if not keys:
        return {}
    rows = await session.execute(
        text(
            "SELECT key, due_at FROM timers WHERE kind = :kind AND key = ANY(:keys) "
            "AND dead_at IS NULL AND retry_at IS NULL"
        ),
        {"kind": kind, "keys": list(keys)},
    )
    return {r.key: r.due_at for r in rows}
