"""The per-key row lock every service takes before writing a user's effects (DESIGN.md §3.6).

The rule: **a user's effects are written under that user's lock.** Whatever produces them (an
event batch, a timer, a job's outcome), a service first locks the rows of every user it will
write for with `lock_rows`, in the same transaction as the writes, and only then reads their
state. Two transactions touching one user therefore run one after the other; a replica, a lane
and a timer worker can never interleave their effects on one user.

How: one `SELECT ... FOR UPDATE` over all the batch's keys, in key order, so two transactions
locking overlapping sets wait for each other instead of deadlocking. Keys with no row yet can be
created (the service's own INSERT, given as `RowLock.insert`) so that a first-seen user is locked
too; rows are created in key order as well. With `skip_locked` (timer and job workers, which
must never wait behind an event batch) rows held elsewhere are reported `busy` rather than
waited for, and keys with no row at all are reported `missing` (a timer whose user is gone: the
caller drops it rather than offering it again forever).

Set-based: one round trip for the lock, plus one when rows must be created and one when
`skip_locked` left keys out (to tell busy from missing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class RowLock:
    """A service's lockable table: `table` keyed by the text column `key`.

    `columns` are read with the lock (the caller's state). `insert`, if given, creates rows for
    keys that have none: an `INSERT ... SELECT ... FROM unnest(CAST(:keys AS text[])) ... ON
    CONFLICT DO NOTHING RETURNING <key>` statement that may use further bound parameters passed
    as `params` to `lock_rows`. Table and column names are trusted code constants, never input.
    """

    table: str
    key: str
    columns: Sequence[str] = ()
    insert: str | None = None
    _select: dict[bool, TextClause] = field(default_factory=dict, init=False, repr=False, compare=False)

    def select(self, skip_locked: bool) -> TextClause:
        statement = self._select.get(skip_locked)
        if statement is None:
            cols = ", ".join([self.key, *self.columns])
            statement = text(
                f"SELECT {cols} FROM {self.table} WHERE {self.key} = ANY(:keys) "
                f"ORDER BY {self.key} FOR UPDATE{' SKIP LOCKED' if skip_locked else ''}"
            )
            self._select[skip_locked] = statement
        return statement

    def present(self) -> TextClause:
        return text(f"SELECT {self.key} FROM {self.table} WHERE {self.key} = ANY(:keys)")


@dataclass(slots=True)
class Locked:
    """The outcome of `lock_rows`. Every requested key is in exactly one of `rows` (existing rows,
    now locked by this transaction, as read), `created` (rows `insert` made just now: locked too,
    and not read back, since the caller wrote them), `busy` (held by another transaction;
    `skip_locked` only) or `missing` (no row, and none created)."""

    rows: dict[str, Row[Any]] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)
    busy: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)


async def lock_rows(
    session: AsyncSession,
    lock: RowLock,
    keys: Iterable[str],
    *,
    create: bool = False,
    skip_locked: bool = False,
    params: Mapping[str, Any] | None = None,
) -> Locked:
    """Lock the rows of `keys` in `session`'s transaction (held until it ends); see the module doc.

    `create` runs `lock.insert` for keys with no row (not with `skip_locked`: a worker that must
    not wait must not create either). A key another transaction created meanwhile is locked (and
    read) after that transaction commits.
    """
    ordered = sorted(set(keys))
    out = Locked()
    if not ordered:
        return out
    out.rows = await _select(session, lock, ordered, skip_locked)
    absent = [k for k in ordered if k not in out.rows]
    if not absent:
        return out
    if skip_locked:
        found = await session.execute(lock.present(), {"keys": absent})
        out.busy = {r[0] for r in found}
        out.missing = set(absent) - out.busy
        return out
    if create and lock.insert is not None:
        made = await session.execute(text(lock.insert), {**(params or {}), "keys": absent})
        out.created = {r[0] for r in made}
        raced = [k for k in absent if k not in out.created]  # created meanwhile by another writer
        if raced:
            out.rows.update(await _select(session, lock, raced, False))
    out.missing = {k for k in absent if k not in out.rows and k not in out.created}
    return out


async def _select(
    session: AsyncSession, lock: RowLock, keys: list[str], skip_locked: bool
) -> dict[str, Row[Any]]:
    result = await session.execute(lock.select(skip_locked), {"keys": keys})
    return {r[0]: r for r in result}
