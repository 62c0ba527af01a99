"""Durable timers on a real PostgreSQL: a poison timer never stops the others, nor the workers;
what a set-based batch claims, spends, puts back and re-arms."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.ids import timer_input_id
from shared.runtime import timers
from shared.runtime.db import create_engine, session_factory
from shared.runtime.errors import PermanentError
from shared.runtime.metrics import RuntimeMetrics
from shared.runtime.schema import RUNTIME_DDL
from tests.conftest import eventually

FIRED_DDL = "CREATE TABLE fired (timer_key text, due_at timestamptz, PRIMARY KEY (timer_key, due_at))"
Body = Callable[[AsyncSession, Sequence[timers.Timer]], Awaitable[Iterable[timers.Timer]]]


@dataclass
class PoisonableHandler:
    """Records fired timers in `fired`; raises for keys in `poison` (ValueError) or `permanent`."""

    poison: set[str] = field(default_factory=set)
    permanent: set[str] = field(default_factory=set)
    outage_once: bool = False
    calls: dict[str, list[float]] = field(default_factory=dict)

    async def on_timers(
        self, session: AsyncSession, due: Sequence[timers.Timer], now: datetime
    ) -> Iterable[timers.Timer]:
        if len(due) == 1:  # a timer alone: isolated after a failed batch, or retried
            self.calls.setdefault(due[0].key, []).append(time.monotonic())
        if self.outage_once:
            self.outage_once = False
            raise ConnectionResetError("database went away")
        for t in due:
            if t.key in self.permanent:
                raise PermanentError("no such user", t.key)
            if t.key in self.poison:
                raise ValueError(f"cannot handle {t.key}")
        await session.execute(
            text("INSERT INTO fired SELECT * FROM unnest(CAST(:k AS text[]), CAST(:d AS timestamptz[]))"),
            {"k": [t.key for t in due], "d": [t.due_at for t in due]},
        )
        return due


@pytest.fixture
async def engine(database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database, pool_size=4)
    async with engine.begin() as conn:
        for ddl in (*RUNTIME_DDL, FIRED_DDL):
            await conn.execute(text(ddl))
    yield engine
    await engine.dispose()


async def _fired(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(text("SELECT timer_key FROM fired"))).scalars())


async def _row(engine: AsyncEngine, key: str) -> dict[str, object] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT attempts, retry_at, last_error, dead_at FROM timers WHERE key = :k"), {"k": key}
            )
        ).one_or_none()
    return None if row is None else dict(row._mapping)


async def _schedule(sessions: async_sessionmaker[AsyncSession], keys: Iterable[str]) -> datetime:
    """Arm a timer per key, due a second ago; return that instant."""
    due = datetime.now(UTC) - timedelta(seconds=1)
    async with sessions() as s, s.begin():
        await timers.schedule(s, [timers.Timer("idle", k, due) for k in keys])
    return due


def _workers(
    sessions: async_sessionmaker[AsyncSession],
    handler: PoisonableHandler,
    registry: CollectorRegistry,
    n: int,
) -> list[timers.TimerWorker]:
    metrics = RuntimeMetrics.create(registry, "test")
    return [
        timers.TimerWorker(
            sessions,
            handler,
            ["idle"],
            metrics,
            "test",
            batch_size=100,
            idle_interval=0.05,
            max_attempts=3,
            backoff_initial=0.2,
            backoff_max=0.4,
            registry=registry,
        )
        for _ in range(n)
    ]


async def test_a_poison_timer_retries_goes_dead_and_fires_after_a_replay(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    keys = [f"u{i}" for i in range(50)]
    await _schedule(sessions, [*keys, "poison"])
    handler = PoisonableHandler(poison={"poison"})
    registry = CollectorRegistry()
    workers = _workers(sessions, handler, registry, 2)
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        await eventually(lambda: _has(engine, *keys))
        row = await eventually(lambda: _dead_row(engine, "poison"), timeout=20)
        assert row["attempts"] == 3
        assert row["retry_at"] is None
        assert "ValueError: cannot handle poison" in str(row["last_error"])
        # Each attempt after the first waited its backoff: ≥ half of 0.2 s, then of 0.4 s.
        attempts = _attempts(handler.calls["poison"])
        assert len(attempts) == 3, attempts
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        assert gaps[0] >= 0.1 and gaps[1] >= 0.2, gaps
        assert not any(t.done() for t in tasks), "a poison timer must not end a worker"
        await eventually(lambda: registry.get_sample_value("userops_timers_dead", _labels()) == 1)
        assert (
            registry.get_sample_value("userops_timer_failures_total", {**_labels(), "outcome": "dead"}) == 1
        )

        async with sessions() as s:
            dead = await timers.list_dead(s)
        assert [(d.kind, d.key, d.attempts) for d in dead] == [("idle", "poison", 3)]
        assert timers.Timer("idle", "poison", dead[0].due_at).id == timer_input_id(
            "idle", "poison", dead[0].due_at
        )
        await asyncio.sleep(0.3)
        assert "poison" not in await _fired(engine), "a dead timer is not offered again"

        handler.poison.clear()  # the fix is deployed
        async with sessions() as s, s.begin():
            assert await timers.replay_dead(s, kind="idle", keys=["poison"]) == 1
        for w in workers:
            w.notify()
        await eventually(lambda: _has(engine, "poison"))
        assert await _row(engine, "poison") is None
        await eventually(lambda: registry.get_sample_value("userops_timers_dead", _labels()) == 0)
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM fired"))).scalar_one() == 51


async def test_permanent_error_kills_the_timer_at_once_and_a_re_arm_revives_it(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    await _schedule(sessions, ["gone", "ok"])
    handler = PoisonableHandler(permanent={"gone"})
    [worker] = _workers(sessions, handler, CollectorRegistry(), 1)
    task = asyncio.create_task(worker.run())
    try:
        row = await eventually(lambda: _dead_row(engine, "gone"))
        assert row["attempts"] == 1
        assert "no such user: gone" in str(row["last_error"])
        await eventually(lambda: _has(engine, "ok"))  # fired alone, before or after `gone` failed
        assert await _fired(engine) == {"ok"}
        # Re-arming (the user came back) gives the timer a clean slate.
        handler.permanent.clear()
        await _schedule(sessions, ["gone"])
        assert await _row(engine, "gone") in (
            None,
            {"attempts": 0, "retry_at": None, "last_error": None, "dead_at": None},
        )
        worker.notify()
        await eventually(lambda: _has(engine, "gone"))
        assert not task.done()
    finally:
        worker.stop()
        await task


async def test_an_outage_retries_the_batch_without_counting_attempts(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    await _schedule(sessions, ["a", "b"])
    handler = PoisonableHandler(outage_once=True)
    [worker] = _workers(sessions, handler, CollectorRegistry(), 1)
    task = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: _has(engine, "a", "b"))
    finally:
        worker.stop()
        await task
    assert "a" not in handler.calls  # the failed batch was retried whole: never isolated


async def _dead_row(engine: AsyncEngine, key: str) -> dict[str, object] | None:
    row = await _row(engine, key)
    return row if row is not None and row["dead_at"] is not None else None


async def _has(engine: AsyncEngine, *keys: str) -> bool:
    return set(keys) <= await _fired(engine)


def _attempts(calls: list[float]) -> list[float]:
    """The handler's calls for one timer, those a few milliseconds apart counted as one attempt.

    Both workers may run a retried timer as a batch of one and fail in the same instant; only
    one of them records the attempt. Attempts are the backoff apart.
    """
    starts: list[float] = []
    for at in sorted(calls):
        if not starts or at - starts[-1] > 0.05:
            starts.append(at)
    return starts


def _labels() -> dict[str, str]:
    return {"service": "test", "kind": "idle"}


# --------------------------------------------------------------------------- set-based batches


class BatchHandler:
    """Records what it handles in `fired` (a second firing of one instant breaks its key)."""

    def __init__(self, body: Body | None = None) -> None:
        self.body = body

    async def on_timers(
        self, session: AsyncSession, due: Sequence[timers.Timer], now: datetime
    ) -> Iterable[timers.Timer]:
        handled = list(await self.body(session, due)) if self.body else list(due)
        if handled:
            await session.execute(
                text("INSERT INTO fired SELECT * FROM unnest(CAST(:k AS text[]), CAST(:d AS timestamptz[]))"),
                {"k": [t.key for t in handled], "d": [t.due_at for t in handled]},
            )
        return handled


def _batch_workers(
    sessions: async_sessionmaker[AsyncSession],
    handler: BatchHandler,
    registry: CollectorRegistry,
    batch: int,
    n: int = 1,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[timers.TimerWorker]:
    metrics = RuntimeMetrics.create(registry, "test")
    return [
        timers.TimerWorker(
            sessions, handler, ["idle"], metrics, "test", batch_size=batch, registry=registry, clock=clock
        )
        for _ in range(n)
    ]


async def _rows(engine: AsyncEngine) -> dict[str, dict[str, object]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT key, due_at, payload, attempts, retry_at, last_error, dead_at FROM timers")
            )
        ).all()
    return {r.key: dict(r._mapping) for r in rows}


async def _firings(engine: AsyncEngine) -> list[tuple[str, datetime]]:
    async with engine.connect() as conn:
        return [(r.timer_key, r.due_at) for r in await conn.execute(text("SELECT * FROM fired"))]


async def test_timers_of_busy_users_go_back_as_they_were_and_fire_once_free(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    due = datetime.now(UTC) - timedelta(seconds=5)
    async with sessions() as s, s.begin():
        await timers.schedule(
            s, [timers.Timer("idle", f"u{i}", due, {"user_id": f"p{i}"}) for i in range(10)]
        )
        await s.execute(
            text(
                "UPDATE timers SET attempts = 2, last_error = 'ValueError: flaky', "
                "retry_at = now() - interval '1 second' WHERE key = 'u7'"
            )
        )
    before = await _rows(engine)
    busy = {"u3", "u7"}

    async def skip_busy(_: AsyncSession, batch: Sequence[timers.Timer]) -> list[timers.Timer]:
        return [t for t in batch if t.key not in busy]

    [worker] = _batch_workers(sessions, BatchHandler(skip_busy), CollectorRegistry(), 100)
    assert await worker.fire_due() == 8
    assert await _rows(engine) == {k: before[k] for k in busy}  # every column as it was
    busy.clear()
    assert await worker.fire_due() == 2
    assert await worker.fire_due() == 0
    assert await _rows(engine) == {}
    assert sorted(k for k, _ in await _firings(engine)) == sorted(f"u{i}" for i in range(10))


async def test_what_the_handler_arms_or_cancels_wins_and_one_instant_fires_once(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    due = await _schedule(sessions, ["moved", "same", "gone", "rearmed"])
    later = due + timedelta(hours=1)

    async def decide(session: AsyncSession, batch: Sequence[timers.Timer]) -> list[timers.Timer]:
        # "moved" fired and re-armed later; "same" re-armed to the instant that just fired;
        # "gone" (unhandled) cancelled; "rearmed" (unhandled) armed to another instant.
        await timers.schedule(
            session,
            [
                timers.Timer("idle", "moved", later, {"n": 2}),
                timers.Timer("idle", "same", due),
                timers.Timer("idle", "rearmed", later),
            ],
        )
        await timers.cancel(session, "idle", ["gone"])
        return [t for t in batch if t.key in ("moved", "same")]

    [worker] = _batch_workers(sessions, BatchHandler(decide), CollectorRegistry(), 100)
    assert await worker.fire_due() == 2
    rows = await _rows(engine)
    assert {k: (r["due_at"], r["payload"], r["attempts"]) for k, r in rows.items()} == {
        "moved": (later, {"n": 2}, 0),
        "rearmed": (later, {}, 0),
    }
    assert sorted(await _firings(engine)) == [("moved", due), ("same", due)]


async def test_concurrent_workers_fire_every_timer_exactly_once(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    await _schedule(sessions, [f"u{i}" for i in range(3000)])
    registry = CollectorRegistry()
    workers = _batch_workers(sessions, BatchHandler(), registry, 150, n=4)

    async def drain(worker: timers.TimerWorker) -> int:
        total = 0
        while n := await worker.fire_due():
            total += n
        return total

    counts = await asyncio.gather(*(drain(w) for w in workers))
    assert sum(counts) == 3000
    assert len(await _firings(engine)) == 3000  # the primary key of `fired` forbids a second firing
    assert await _rows(engine) == {}
    assert (
        registry.get_sample_value("userops_timers_fired_total", {"service": "test", "kind": "idle"}) == 3000
    )
    assert (
        registry.get_sample_value(
            "userops_timer_failures_total", {"service": "test", "kind": "idle", "outcome": "retry"}
        )
        is None
    )


async def test_the_backlog_gauge_counts_what_is_left_after_each_full_batch(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    await _schedule(sessions, [f"u{i}" for i in range(250)])
    registry = CollectorRegistry()
    [worker] = _batch_workers(sessions, BatchHandler(), registry, 100)
    assert await worker.fire_due() == 100
    assert registry.get_sample_value("userops_timer_backlog", {"service": "test"}) == 150
    assert await worker.fire_due() == 100
    # Counted at most every few seconds while batches are full; a partial batch empties it.
    assert await worker.fire_due() == 50
    assert registry.get_sample_value("userops_timer_backlog", {"service": "test"}) == 0


async def test_a_timer_due_before_a_full_batch_fires_once_the_backlog_drains(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    await _schedule(sessions, [f"u{i}" for i in range(250)])
    [worker] = _batch_workers(sessions, BatchHandler(), CollectorRegistry(), 100)
    assert await worker.fire_due() == 100
    await _arm_late(sessions)
    sizes = []
    while n := await worker.fire_due():
        sizes.append(n)
    # While batches came back full the claim started where the last batch began, past "late".
    assert sizes == [100, 50, 1]
    assert "late" in {k for k, _ in await _firings(engine)}
    assert await _rows(engine) == {}


async def test_a_timer_due_before_a_full_batch_waits_a_few_seconds_at_most(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    await _schedule(sessions, [f"u{i}" for i in range(300)])
    now = [datetime.now(UTC)]
    [worker] = _batch_workers(sessions, BatchHandler(), CollectorRegistry(), 100, clock=lambda: now[0])
    assert await worker.fire_due() == 100
    await _arm_late(sessions)
    now[0] += timedelta(seconds=6)
    assert await worker.fire_due() == 100
    assert "late" in {k for k, _ in await _firings(engine)}


async def _arm_late(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as s, s.begin():
        await timers.schedule(s, [timers.Timer("idle", "late", datetime.now(UTC) - timedelta(hours=1))])
