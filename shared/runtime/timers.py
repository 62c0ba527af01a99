"""Durable timers: a row per (kind, key) with a `due_at`, fired exactly once by any replica.

Scheduling is an upsert, so re-arming a user's deadline replaces the old one. The worker claims
due rows with `FOR UPDATE SKIP LOCKED` in a transaction and hands them to the service's handler
in that same transaction; a fired row is deleted there unless the handler re-armed it, so a crash
before commit leaves it due, and a commit leaves it gone: once, and only once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.logging import get_logger
from shared.runtime.loop import WorkLoop
from shared.runtime.metrics import RuntimeMetrics

log = get_logger(__name__)
_BACKLOG_COUNT_EVERY = timedelta(seconds=15)


@dataclass(frozen=True, slots=True)
class Timer:
    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """A stable id for this firing, usable as the input id of derived outputs."""
        return f"timer:{self.kind}:{self.key}:{self.due_at.isoformat()}"


_UPSERT = text(
    """
    INSERT INTO timers (kind, key, due_at, payload)
    SELECT * FROM unnest(CAST(:kinds AS text[]), CAST(:keys AS text[]),
                         CAST(:dues AS timestamptz[]), CAST(:payloads AS jsonb[]))
    ON CONFLICT (kind, key) DO UPDATE SET due_at = EXCLUDED.due_at, payload = EXCLUDED.payload
    """
)
_CANCEL = text(
    "DELETE FROM timers t USING unnest(CAST(:kinds AS text[]), CAST(:keys AS text[])) AS c(kind, key) "
    "WHERE t.kind = c.kind AND t.key = c.key"
)
_CLAIM = text(
    """
    SELECT kind, key, due_at, payload FROM timers
    WHERE due_at <= :now AND kind = ANY(:kinds)
    ORDER BY due_at LIMIT :n
    FOR UPDATE SKIP LOCKED
    """
)
_ARMED = "shared.runtime.timers.armed"  # session.info key: (kind, key) -> due_at armed in this transaction

_DELETE_FIRED = text(
    """
    DELETE FROM timers t
    USING unnest(CAST(:kinds AS text[]), CAST(:keys AS text[]), CAST(:dues AS timestamptz[]))
          AS f(kind, key, due_at)
    WHERE t.kind = f.kind AND t.key = f.key AND t.due_at = f.due_at
    """
)


async def schedule(session: AsyncSession, timers: Sequence[Timer]) -> None:
    """Arm (or re-arm) timers in the caller's transaction."""
    if not timers:
        return
    armed = session.info.setdefault(_ARMED, {})
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
    if keys:
        armed = session.info.get(_ARMED)
        if armed:
            for key in keys:
                armed.pop((kind, key), None)
        await session.execute(_CANCEL, {"kinds": [kind] * len(keys), "keys": list(keys)})


class TimerHandler(Protocol):
    async def on_timers(
        self, session: AsyncSession, timers: Sequence[Timer], now: datetime
    ) -> Iterable[Timer]:
        """Handle due timers inside `session`'s transaction; return the ones handled.

        Timers not returned (e.g. their user is locked by an event batch right now) stay due and
        are offered again shortly. A handled timer is deleted unless the handler re-armed it.
        """
        ...


class TimerWorker(WorkLoop):
    """Fires due timers of the given kinds; run several (or several replicas) safely."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        handler: TimerHandler,
        kinds: Sequence[str],
        metrics: RuntimeMetrics,
        service: str,
        *,
        batch_size: int = 1000,
        idle_interval: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessions = sessions
        self._handler = handler
        self._kinds = list(kinds)
        self._metrics = metrics
        self._service = service
        self._batch_size = batch_size
        self._idle_interval = idle_interval
        self._clock = clock
        self._next_backlog_count = datetime.min.replace(tzinfo=UTC)
        super().__init__("timer batch", drain_on_stop=False)

    async def run(self) -> None:
        await self.loop(self.fire_due, self._idle_wait)

    async def _idle_wait(self) -> float:
        """Sleep until the next timer is due (bounded), so deadlines fire on time without busy polling."""
        async with self._sessions() as session:
            nxt = (
                await session.execute(
                    text("SELECT min(due_at) FROM timers WHERE kind = ANY(:kinds)"), {"kinds": self._kinds}
                )
            ).scalar()
        if nxt is None:
            return self._idle_interval
        wait: float = (nxt - self._clock()).total_seconds()
        return max(0.0, min(self._idle_interval, wait))

    async def fire_due(self) -> int:
        """Claim and handle one batch of due timers; return how many fired."""
        now = self._clock()
        async with self._sessions() as session, session.begin():
            rows = (
                await session.execute(_CLAIM, {"now": now, "kinds": self._kinds, "n": self._batch_size})
            ).all()
            if not rows:
                self._metrics.timer_backlog.set(0)
                return 0
            due = [Timer(kind=r.kind, key=r.key, due_at=r.due_at, payload=r.payload) for r in rows]
            session.info[_ARMED] = {}
            handled = list(await self._handler.on_timers(session, due, now))
            # A row the handler re-armed to another instant has moved on; deleting it by its old
            # `due_at` would match nothing, so only the others are sent.
            armed = session.info.pop(_ARMED)
            spent = [t for t in handled if armed.get((t.kind, t.key), t.due_at) == t.due_at]
            if spent:
                await session.execute(
                    _DELETE_FIRED,
                    {
                        "kinds": [t.kind for t in spent],
                        "keys": [t.key for t in spent],
                        "dues": [t.due_at for t in spent],
                    },
                )
            if len(rows) < self._batch_size:
                self._metrics.timer_backlog.set(len(rows) - len(handled))
            elif self._clock() >= self._next_backlog_count:
                # Counting a large backlog costs a scan: at most every few seconds.
                self._next_backlog_count = self._clock() + _BACKLOG_COUNT_EVERY
                count = await session.execute(
                    text("SELECT count(*) FROM timers WHERE due_at <= :now AND kind = ANY(:kinds)"),
                    {"now": now, "kinds": self._kinds},
                )
                self._metrics.timer_backlog.set(int(count.scalar_one()) - len(handled))
        by_kind = Counter(t.kind for t in handled)
        for kind, n in by_kind.items():
            self._metrics.timers_fired.labels(service=self._service, kind=kind).inc(n)
        if not handled:
            # Every due timer belongs to a user busy in an event batch: give that batch a moment.
            await asyncio.sleep(0.02)
        return len(handled)
