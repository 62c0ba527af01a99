"""Migration 0004 on existing data: jsonb states become their bytes, stage counts are seeded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

import services.segmenter
from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.decide import apply_event
from services.segmenter.domain.state import UserState
from shared.events import Event, format_ts
from shared.runtime import migrations
from shared.runtime.db import create_engine

MIGRATIONS = Path(services.segmenter.__file__).parent / "migrations"
NOW = datetime.now(UTC).replace(microsecond=0)


def _state(user: str, at: datetime) -> UserState:
    body = {"type": "page", "messageId": f"m-{user}", "userId": user, "timestamp": format_ts(at)}
    body["receivedAt"] = body["timestamp"]
    return apply_event(None, Event.from_wire(body), SegmenterConfig(), NOW).state


async def test_existing_profiles_keep_their_states_and_are_counted_per_stage(database: str) -> None:
    engine = create_engine(database)
    try:
        await migrations.upgrade(engine, MIGRATIONS, "0003")
        ann, bob = _state("ann", NOW - timedelta(hours=1)), _state("bob", NOW - timedelta(days=10))
        async with engine.begin() as conn:
            for user, state, merged in (("ann", ann, None), ("bob", bob, None), ("anon-1", None, "ann")):
                await conn.execute(
                    text(
                        "INSERT INTO profiles (user_id, state, stage, first_seen, merged_into) "
                        "VALUES (:u, CAST(:s AS jsonb), :stage, :at, :m)"
                    ),
                    {
                        "u": user,
                        "s": state.to_json().decode() if state else "{}",
                        "stage": state.stage if state else "new",
                        "at": NOW,
                        "m": merged,
                    },
                )
        await migrations.upgrade(engine, MIGRATIONS)
        async with engine.connect() as conn:
            rows = {
                r.user_id: r.state for r in await conn.execute(text("SELECT user_id, state FROM profiles"))
            }
            counted = await conn.execute(text("SELECT stage, sum(n) AS n FROM stage_counts GROUP BY stage"))
            counts: dict[str, int] = {r.stage: int(r.n) for r in counted}
    finally:
        await engine.dispose()
    assert UserState.from_json(rows["ann"]) == ann and UserState.from_json(rows["bob"]) == bob
    assert rows["anon-1"] == b""  # a merged profile's empty state
    assert {ann.stage, bob.stage} == {"new", "at_risk"}
    assert counts == {"new": 1, "at_risk": 1}  # the merged profile is not counted
