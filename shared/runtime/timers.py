"""Durable timers: a row per (kind, key) with a `due_at`, fired exactly once by any replica.

The worker claims due rows with `FOR UPDATE SKIP LOCKED` in a transaction and hands them to the
service's handler in that same transaction; a fired row is deleted there unless the handler
re-armed it, so a crash before commit leaves it due, and a commit leaves it gone: once, and only
once.

One bad timer never stops the others (DESIGN.md §3.4). When a batch fails with an error that is
not an infrastructure outage, the worker isolates it: each timer is re-run alone, under a
savepoint, and the one that fails gets `attempts + 1`, its error and a `retry_at` backoff, or —
past `max_attempts`, or on `PermanentError` — a `dead_at`: it is then left alone until an
operator replays it (`replay_dead`, `userops timers replay`). An outage (database down) is not
the timers' fault: the batch is retried with backoff as it is, and no attempt is counted.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.logging import get_logger
from shared.runtime import timer_store as store
from shared.runtime.errors import PermanentError, backoff_delay, is_retryable
from shared.runtime.failure import failure_text
from shared.runtime.loop import WorkLoop
from shared.runtime.metrics import RuntimeMetrics
from shared.runtime.timer_store import DeadTimer, Timer, cancel, list_dead, replay_dead, schedule

__all__ = [
    "DeadTimer",
    "Timer",
    "TimerHandler",
    "TimerMetrics",
    "TimerWorker",
    "cancel",
    "list_dead",
    "replay_dead",
    "retry_delay",
    "schedule",
]

log = get_logger(__name__)
_BACKLOG_COUNT_EVERY = timedelta(seconds=15)
# While batches come back full, a claim starts where the last one began (see `timer_store._CLAIM`);
# a timer due before that (armed into the past, or retried) waits for a partial batch or this long.
_FLOOR_FOR = timedelta(seconds=5)


class TimerHandler(Protocol):
    async def on_timers(
        self, session: AsyncSession, timers: Sequence[Timer], now: datetime
    ) -> Iterable[Timer]:
        """Handle due timers inside `session`'s transaction; return the ones handled.

        Timers not returned (e.g. their user is locked by an event batch right now) stay due and
        are offered again shortly. A handled timer is deleted unless the handler re-armed it.
        A timer whose key is gone (the user was deleted or merged away) must be returned as
        handled, with a log line, so it is dropped instead of offered forever.

        Raise `PermanentError` for a timer that can never fire (it goes dead at once); any other
        non-infrastructure exception is retried with backoff up to the worker's `max_attempts`.
        Another timer in the batch failing may make the worker re-run the batch one timer at a
        time, so the handler's effects must be in `session` only (nothing outside the database).
        """
        ...


@dataclass(frozen=True)
class TimerMetrics:
    """Dead timers per kind and failures of timer handlers; one per (registry, service)."""

    service: str
    dead: Gauge
    failures: Counter
    _created: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, dict[str, TimerMetrics]]] = (
        weakref.WeakKeyDictionary()
    )

    @classmethod
    def create(cls, registry: CollectorRegistry, service: str) -> TimerMetrics:
        """Register the metrics on `registry`, or return those already registered there."""
        existing = cls._created.setdefault(registry, {})
        if service not in existing:
            existing[service] = cls(
                service=service,
                dead=Gauge(
                    "userops_timers_dead",
                    "Timers dead after failing past their bound; replay them once fixed.",
                    ["service", "kind"],
                    registry=registry,
                ),
                failures=Counter(
                    "userops_timer_failures",
                    "Timer handler failures, by what followed (retry or dead).",
                    ["service", "kind", "outcome"],
                    registry=registry,
                ),
            )
        return existing[service]


def retry_delay(
    attempts: int, error: BaseException, max_attempts: int, backoff_initial: float, backoff_max: float
) -> float | None:
    """Seconds until a timer that failed for the `attempts`-th time is offered again; None: dead."""
    if isinstance(error, PermanentError) or attempts >= max_attempts:
        return None
    return backoff_delay(attempts, backoff_initial, backoff_max)


class TimerWorker(WorkLoop):
    """Fires due timers of the given kinds; run several (or several replicas) safely.

    `max_attempts` failures of a timer (counting the first) make it dead; between them it waits
    `backoff_delay(attempts, backoff_initial, backoff_max)` seconds.
    """

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
        max_attempts: int = 5,
        backoff_initial: float = 1.0,
        backoff_max: float = 600.0,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessions = sessions
        self._handler = handler
        self._kinds = list(kinds)
        self._metrics = metrics
        self._timer_metrics = TimerMetrics.create(registry or CollectorRegistry(), service)
        self._service = service
        self._batch_size = batch_size
        self._idle_interval = idle_interval
        self._max_attempts = max_attempts
        self._backoff = (backoff_initial, backoff_max)
        self._clock = clock
        self._next_backlog_count = datetime.min.replace(tzinfo=UTC)
        self._next_dead_count = datetime.min.replace(tzinfo=UTC)
        self._floor = store.NO_FLOOR
        self._floor_until = datetime.min.replace(tzinfo=UTC)
        super().__init__("timer batch", drain_on_stop=False)

    async def run(self) -> None:
        await self.loop(self.fire_due, self._idle_wait)

    async def _idle_wait(self) -> float:
        """Sleep until the next timer is due (bounded), so deadlines fire on time without busy polling."""
        async with self._sessions() as session:
            nxt = (await session.execute(store.NEXT_DUE, {"kinds": self._kinds})).scalar()
        if nxt is None:
            return self._idle_interval
        wait: float = (nxt - self._clock()).total_seconds()
        return max(0.0, min(self._idle_interval, wait))

    async def fire_due(self) -> int:
        """Claim and handle one batch of due timers; return how many fired (or failed alone)."""
        now = self._clock()
        if now >= self._next_dead_count:
            async with self._sessions() as session:
                await self._count_dead(session)
        claimed: list[Timer] = []
        try:
            async with self._sessions() as session, session.begin():
                if now >= self._floor_until:
                    self._floor = store.NO_FLOOR
                rows = await store.claim(session, now, self._kinds, self._batch_size, self._floor)
                self._move_floor(rows, now)
                if not rows:
                    self._metrics.timer_backlog.set(0)
                    return 0
                claimed = [Timer(r[0], r[1], r[2], r[3]) for r in rows]
                handled = await self._fire(session, claimed, rows, now)
                await self._measure_backlog(session, now, len(rows), len(handled))
        except Exception as exc:
            self._floor = store.NO_FLOOR
            if is_retryable(exc) or not claimed:
                raise  # an outage: the loop backs off and the batch is offered again as it was
            log.warning(
                "timer batch failed; firing its timers one at a time",
                timers=len(claimed),
                error=failure_text(exc),
            )
            # A batch of one has failed alone already: record it without running it again.
            return await self._isolate(claimed, now, exc if len(claimed) == 1 else None)
        self._count_fired(handled)
        if not handled:
            # Every due timer belongs to a user busy in an event batch: give that batch a moment.
            await asyncio.sleep(0.02)
        return len(handled)

    def _move_floor(self, rows: Sequence[Sequence[Any]], now: datetime) -> None:
        if len(rows) < self._batch_size:
            self._floor = store.NO_FLOOR  # the backlog is drained: look at everything again
            return
        if self._floor == store.NO_FLOOR:
            self._floor_until = now + _FLOOR_FOR
        self._floor = rows[0][2]  # the oldest of the batch: the rows it put back stay in reach

    async def _fire(
        self, session: AsyncSession, due: Sequence[Timer], rows: Sequence[Sequence[Any]], now: datetime
    ) -> list[Timer]:
        """Run the handler on `due`, claimed (deleted) in `session`'s transaction; put back the rest.

        `rows` are the claimed rows (`store.claim`'s columns), in the order of `due`.
        """
        armed: dict[tuple[str, str], datetime | None] = {}
        session.info[store.ARMED] = armed
        try:
            handled = list(await self._handler.on_timers(session, due, now))
        finally:
            session.info.pop(store.ARMED, None)
        # A timer left unhandled goes back as it was, unless the handler armed or cancelled it.
        # Handlers return the very objects they were given: compare identities first (cheap).
        same = {id(t) for t in handled}
        rest = [(t, r) for t, r in zip(due, rows, strict=True) if id(t) not in same]
        fired = {(t.kind, t.key, t.due_at) for t in handled} if rest else set()
        back = [r for t, r in rest if (t.kind, t.key, t.due_at) not in fired and (t.kind, t.key) not in armed]
        if back:
            await session.execute(
                store.REOFFER,
                {
                    "kinds": [r[0] for r in back],
                    "keys": [r[1] for r in back],
                    "dues": [r[2] for r in back],
                    "payloads": [orjson.dumps(r[3]).decode() for r in back],
                    "attempts": [r[4] for r in back],
                    "retry_ats": [r[5] for r in back],
                    "errors": [r[6] for r in back],
                },
            )
        again = [t for t in handled if armed.get((t.kind, t.key)) == t.due_at]
        if again:
            await session.execute(
                store.DELETE_FIRED,
                {
                    "kinds": [t.kind for t in again],
                    "keys": [t.key for t in again],
                    "dues": [t.due_at for t in again],
                },
            )
        return handled

    async def _isolate(self, batch: Sequence[Timer], now: datetime, failed: Exception | None) -> int:
        """Fire each timer of a failed batch alone; record the failure of those that fail alone."""
        done = 0
        for timer in batch:
            key = {"kind": timer.kind, "key": timer.key, "due": timer.due_at}
            async with self._sessions() as session, session.begin():
                row = (await session.execute(store.CLAIM_ONE, {**key, "now": now})).one_or_none()
                if row is None:
                    continue  # fired, re-armed or claimed by another worker meanwhile
                one = Timer(row.kind, row.key, row.due_at, row.payload)
                if failed is not None:
                    await self._record_failure(session, one, row.attempts + 1, failed)
                    done += 1
                    continue
                try:
                    async with session.begin_nested():
                        await session.execute(store.TAKE_ONE, key)
                        handled = await self._fire(session, [one], [row], now)
                except Exception as exc:
                    if is_retryable(exc):
                        raise
                    await self._record_failure(session, one, row.attempts + 1, exc)
                    done += 1
                    continue
            self._count_fired(handled)
            done += len(handled)
        return done

    async def _record_failure(
        self, session: AsyncSession, timer: Timer, attempts: int, exc: Exception
    ) -> None:
        retry_in = retry_delay(attempts, exc, self._max_attempts, *self._backoff)
        dead = retry_in is None
        now = self._clock()
        retry_at = None if retry_in is None else now + timedelta(seconds=retry_in)
        await session.execute(
            store.RECORD_FAILURE,
            {
                "kind": timer.kind,
                "key": timer.key,
                "due": timer.due_at,
                "attempts": attempts,
                "error": failure_text(exc),
                "retry_at": retry_at,
                "dead_at": now if dead else None,
            },
        )
        outcome = "dead" if dead else "retry"
        self._timer_metrics.failures.labels(service=self._service, kind=timer.kind, outcome=outcome).inc()
        fields = {"kind": timer.kind, "attempts": attempts, "error": failure_text(exc)}
        if dead:
            log.error("timer failed; dead until replayed", **fields)
            self._next_dead_count = datetime.min.replace(tzinfo=UTC)  # refresh the gauge soon
        else:
            log.warning(
                "timer failed; will retry", retry_at=retry_at.isoformat() if retry_at else None, **fields
            )

    async def _measure_backlog(
        self, session: AsyncSession, now: datetime, claimed: int, handled: int
    ) -> None:
        if claimed < self._batch_size:
            self._metrics.timer_backlog.set(claimed - handled)
        elif self._clock() >= self._next_backlog_count:
            # Counting a large backlog costs a scan: at most every few seconds.
            self._next_backlog_count = self._clock() + _BACKLOG_COUNT_EVERY
            # The batch's claimed rows are deleted by now and its unhandled ones back: all counted.
            count = await session.execute(store.COUNT_DUE, {"now": now, "kinds": self._kinds})
            self._metrics.timer_backlog.set(int(count.scalar_one()))

    async def _count_dead(self, session: AsyncSession) -> None:
        self._next_dead_count = self._clock() + _BACKLOG_COUNT_EVERY
        rows = (await session.execute(store.COUNT_DEAD, {"kinds": self._kinds})).all()
        counts = {r.kind: int(r.n) for r in rows}
        for kind in self._kinds:
            self._timer_metrics.dead.labels(service=self._service, kind=kind).set(counts.get(kind, 0))

    def _count_fired(self, handled: Sequence[Timer]) -> None:
        for kind, n in Tally(t.kind for t in handled).items():
            self._metrics.timers_fired.labels(service=self._service, kind=kind).inc(n)
