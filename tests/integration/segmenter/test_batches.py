"""The segmenter's handler on a real PostgreSQL database, one deterministic batch at a time.

Batches here are exactly the ones given (no Kafka poll decides where a batch ends), so a test can
put an anonymous profile's first rows and its merge into one batch (defect 10), and a timer can
find its profile busy or gone (defect 7).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import services.segmenter
from services.segmenter.adapters import store as store_module
from services.segmenter.config import SegmenterConfig
from services.segmenter.consumer import IDLE_TIMER, SegmenterHandler
from services.segmenter.domain.batch import apply_batch
from services.segmenter.domain.decide import event_input_id
from services.segmenter.domain.state import UserState
from services.segmenter.metrics import SegmenterMetrics
from shared import ids, topics
from shared.events import Event, format_ts
from shared.runtime import migrations
from shared.runtime.db import create_engine, session_factory
from shared.runtime.runner import Message, Record
from shared.runtime.timers import Timer

MIGRATIONS = Path(services.segmenter.__file__).parent / "migrations"
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Store:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    handler: SegmenterHandler
    registry: CollectorRegistry

    async def handle(self, *wire: dict[str, Any]) -> None:
        """Decode `wire` events as the runner does and apply them as ONE batch, in one transaction."""
        messages = []
        for offset, body in enumerate(wire):
            record = Record(topics.EVENTS, 0, offset, None, orjson.dumps(body))
            decoded = self.handler.decode(record)
            messages.append(
                Message(record.topic, 0, offset, decoded.value, decoded.input_id, decoded.received_at)
            )
        async with self.sessions() as session, session.begin():
            await self.handler.handle(session, messages)

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(text(sql), params)).all())


@pytest.fixture
async def store(database: str) -> AsyncIterator[Store]:
    engine = create_engine(database, pool_size=3)
    await migrations.upgrade(engine, MIGRATIONS)
    registry = CollectorRegistry()
    metrics = SegmenterMetrics.create(registry)
    handler = SegmenterHandler(SegmenterConfig(), "test", topics.LIFECYCLE, lambda: NOW, metrics=metrics)
    yield Store(engine, session_factory(engine), handler, registry)
    await engine.dispose()


def wire(kind: str, mid: str, at: datetime, **ids: Any) -> dict[str, Any]:
    stamp = format_ts(at)
    return {"type": kind, "messageId": mid, "timestamp": stamp, "receivedAt": stamp, **ids}


async def test_one_batch_that_creates_anonymous_rows_and_merges_them_leaves_none_behind(store: Store) -> None:
    """Defect 10: the anonymous page view's history row and activity day move with the merge."""
    await store.handle(
        wire("page", "v1", NOW - timedelta(minutes=5), anonymousId="anon-1", name="Landing"),
        wire("identify", "i1", NOW, userId="u1", anonymousId="anon-1", traits={"plan": "pro"}),
    )
    history = await store.rows("SELECT user_id, from_stage, to_stage FROM stage_history")
    assert [tuple(r) for r in history] == [("u1", None, "new")]
    days = await store.rows("SELECT user_id, day FROM activity_days")
    assert [r.user_id for r in days] == ["u1"]
    profiles = await store.rows("SELECT user_id, merged_into FROM profiles ORDER BY user_id")
    assert [tuple(r) for r in profiles] == [("anon-1", "u1"), ("u1", None)]
    assert not await store.rows("SELECT 1 FROM segment_members WHERE user_id = 'anon-1'")
    assert not await store.rows("SELECT 1 FROM timers WHERE key = 'anon-1'")


async def test_two_users_reusing_a_message_id_both_keep_their_rows_and_events(store: Store) -> None:
    """Defect 3: ids are scoped by user, so neither user's rows are dropped as duplicates."""
    await store.handle(
        wire("track", "signup-1", NOW, userId="alice", event="Signed Up"),
        wire("track", "signup-1", NOW, userId="bob", event="Signed Up"),
    )
    history = await store.rows("SELECT user_id, event_id FROM stage_history ORDER BY user_id")
    assert [r.user_id for r in history] == ["alice", "bob"]
    assert history[0].event_id != history[1].event_id
    outbox = await store.rows("SELECT id, key, value FROM outbox ORDER BY key")
    assert [r.key for r in outbox] == ["alice", "bob"]
    assert [orjson.loads(r.value)["userId"] for r in outbox] == ["alice", "bob"]
    assert {r.id for r in outbox} == {r.event_id for r in history}


async def test_a_timer_whose_profile_is_gone_is_dropped_and_a_busy_one_kept(store: Store) -> None:
    """Defect 7: `gone` and `busy` are told apart; only `busy` is offered again."""
    await store.handle(wire("page", "p1", NOW - timedelta(days=8), userId="busy"))
    due = [Timer(IDLE_TIMER, "ghost", NOW), Timer(IDLE_TIMER, "busy", NOW)]
    async with store.sessions() as holder, holder.begin():
        await holder.execute(text("SELECT 1 FROM profiles WHERE user_id = 'busy' FOR UPDATE"))
        async with store.sessions() as session, session.begin():
            handled = list(await store.handler.on_timers(session, due, NOW))
    assert [t.key for t in handled] == ["ghost"]
    async with store.sessions() as session, session.begin():
        handled = list(await store.handler.on_timers(session, due[1:], NOW))
    assert [t.key for t in handled] == ["busy"]
    stage = await store.rows("SELECT stage FROM profiles WHERE user_id = 'busy'")
    assert stage[0].stage == "at_risk"


async def test_a_later_deadline_keeps_the_armed_timer_which_then_fires_early_without_effects(
    store: Store,
) -> None:
    """The idle timer is written only when the deadline comes earlier; an early firing changes
    nothing and re-arms the timer to the real deadline."""

    async def due_at() -> datetime:
        return (await store.rows("SELECT due_at FROM timers WHERE key = 'carol'"))[0].due_at  # type: ignore[no-any-return]

    await store.handle(wire("page", "p1", NOW - timedelta(days=10), userId="carol"))
    first = await due_at()
    assert first == NOW + timedelta(days=20)  # at_risk -> dormant, 30 days after the visit
    await store.handle(wire("page", "p2", NOW - timedelta(days=9), userId="carol"))
    assert await due_at() == first  # the deadline moved a day later: the timer was left alone
    history = len(await store.rows("SELECT 1 FROM stage_history"))
    outbox = len(await store.rows("SELECT 1 FROM outbox"))
    async with store.sessions() as session, session.begin():
        await session.execute(text("DELETE FROM timers WHERE key = 'carol'"))  # claimed, as the worker does
        handled = list(await store.handler.on_timers(session, [Timer(IDLE_TIMER, "carol", first)], NOW))
    assert [t.key for t in handled] == ["carol"]
    assert await due_at() == NOW + timedelta(days=21)
    assert len(await store.rows("SELECT 1 FROM stage_history")) == history
    assert len(await store.rows("SELECT 1 FROM outbox")) == outbox
    stage = await store.rows("SELECT stage FROM profiles WHERE user_id = 'carol'")
    assert stage[0].stage == "at_risk"


def test_decode_names_the_scoped_input_id() -> None:
    handler = SegmenterHandler(SegmenterConfig(), "test", topics.LIFECYCLE, lambda: NOW)
    body = wire("page", "m-1", NOW, userId="u-1")
    decoded = handler.decode(Record("userops.events.v1.some-physical-name", 2, 7, b"u-1", orjson.dumps(body)))
    assert isinstance(decoded.value, Event)
    # The contract name, not the physical topic: a test topic, a mirror or a replay give one id.
    assert decoded.input_id == ids.input_id(topics.EVENTS, "u-1", "m-1")
    assert decoded.input_id.startswith("userops.events.v1\x1f")


async def test_a_state_with_extreme_numbers_reads_back_from_its_column_unchanged(store: Store) -> None:
    """Defect 2: what the store reads is what the domain produced (also `through_jsonb`'s premise)."""
    traits = {"ltv": 1.2345678901234567e18, "tiny": 1e-07, "big": 1e300, "n": 2**64 - 1, "neg": -3.5e17,
              "ünï": {"deep": [1.5e16, "ß", None, True]}}  # fmt: skip
    bodies = [
        wire("identify", "t1", NOW, userId="ïd-✓", traits=traits),
        wire("track", "o1", NOW, userId="ïd-✓", event="Order Completed", properties={"revenue": 1e15}),
        wire("track", "o2", NOW, userId="ïd-✓", event="Order Completed", properties={"revenue": 1e308}),
        wire("track", "o3", NOW, userId="ïd-✓", event="Order Completed", properties={"revenue": "NaN"}),
    ]
    await store.handle(*bodies)
    events = [Event.from_bytes(orjson.dumps(b)) for b in bodies]
    cfg = SegmenterConfig().model_copy(update={"version": "test"})  # as the handler has it
    expected = apply_batch({"ïd-✓": None}, {}, [(e, event_input_id(e)) for e in events], cfg, NOW)
    row = await store.rows("SELECT state FROM profiles WHERE user_id = 'ïd-✓'")
    stored = UserState.from_json(row[0].state)
    assert stored == expected.states["ïd-✓"]
    assert stored.revenue == 1e15 and stored.orders == 3
    assert store.registry.get_sample_value("userops_segmenter_amounts_rejected_total") == 2
    assert isinstance(stored.traits["ltv"], int) and stored.traits["ltv"] == 1.2345678901234567e18
    assert row[0].state == stored.to_json()  # stored as written, no JSON re-print on the way


async def test_the_per_user_lock_serialises_writers_and_creates_first_seen_rows_once(store: Store) -> None:
    """`store.lock_profiles` on `shared.runtime.locks`: a second writer of a user waits for the
    first, then finds the row the first created (never a second placeholder)."""
    order: list[str] = []
    first_locked = asyncio.Event()

    async def first() -> None:
        async with store.sessions() as session, session.begin():
            locked = await store_module.lock_profiles(session, ["zed", "amy"], NOW)
            assert locked.created == {"zed", "amy"} and locked.states == {"zed": None, "amy": None}
            first_locked.set()
            await asyncio.sleep(0.3)  # hold the locks while the second writer queues up
            await session.execute(text("UPDATE profiles SET stage = 'active' WHERE user_id = 'zed'"))
            order.append("first wrote")

    async def second() -> None:
        await first_locked.wait()
        async with store.sessions() as session, session.begin():
            locked = await store_module.lock_profiles(session, ["zed"], NOW)
            order.append("second locked")
            assert locked.created == set() and "zed" in locked.states
            stage = await session.execute(text("SELECT stage FROM profiles WHERE user_id = 'zed'"))
            assert stage.scalar_one() == "active"

    await asyncio.wait_for(asyncio.gather(first(), second()), timeout=10)
    assert order == ["first wrote", "second locked"]
    async with store.sessions() as session, session.begin():
        skip = await store_module.lock_profiles(session, ["zed", "nobody"], NOW, skip_locked=True)
    assert (set(skip.states), skip.busy, skip.missing) == ({"zed"}, set(), {"nobody"})
