"""Replay equals live, and the analytics a user reads from the API."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.replay import read_ndjson, replay
from shared.config import load_yaml
from tests.conftest import Stack, eventually
from tests.integration.segmenter.conftest import SegmenterFactory
from tests.integration.segmenter.harness import produce_events, wire_event
from tests.integration.segmenter.test_reliability import CONFIG, _drained, _fetch
from tests.integration.segmenter.workload import workload

EVENTS = "userops.events.v1"


async def test_replay_of_the_same_events_gives_the_live_stages(
    stack: Stack, topics: dict[str, str], database: str, segmenter_factory: SegmenterFactory, tmp_path: Path
) -> None:
    events = workload(users=400, events=4000, seed=3)
    # Anonymous visitors, some of whom sign up and are aliased to a user id.
    anchor = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=12)
    for i in range(30):
        ts = anchor - timedelta(days=20 - i % 5)
        anon = {
            "type": "page",
            "messageId": f"anon-{i}",
            "anonymousId": f"anon-{i}",
            "name": "Landing",
            "timestamp": ts.isoformat(),
            "receivedAt": ts.isoformat(),
        }
        events.append(anon)
        if i % 2 == 0:
            events.append(
                wire_event(
                    f"user-{i:05d}",
                    "Signed Up",
                    ts + timedelta(minutes=5),
                    mid=f"su-{i}",
                    anonymousId=f"anon-{i}",
                )
            )
    await produce_events(stack.bootstrap, topics[EVENTS], events)
    seg = segmenter_factory(CONFIG)
    seg.start()
    await eventually(lambda: _drained(database, len(events)), timeout=120, interval=0.5)
    live = {
        r["user_id"]: r["stage"]
        for r in await _fetch(database, "SELECT user_id, stage FROM profiles WHERE merged_into IS NULL")
    }

    ndjson = tmp_path / "events.ndjson"
    ndjson.write_bytes(b"\n".join(orjson.dumps(e) for e in events))
    result = replay(read_ndjson(ndjson), load_yaml(CONFIG, SegmenterConfig), datetime.now(UTC))
    replayed = {uid: s.stage for uid, s in result.states.items()}
    assert replayed == live
    assert len(live) == 400 + 15  # 15 anonymous visitors never signed up; 15 were merged
    # Users per stage are kept as deltas per batch (merges included): they match a full count.
    counts = await seg.get("/v1/stages")
    assert counts["total"] == len(live)
    assert {s: n for s, n in counts["stages"].items() if n} == dict(Counter(live.values()))


async def test_activity_retention_and_lifecycle_analytics(
    stack: Stack, topics: dict[str, str], segmenter_factory: SegmenterFactory
) -> None:
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    if datetime.now(UTC).hour < 1:  # keep "today" unambiguous near midnight
        today -= timedelta(hours=2)

    def day(n: int) -> datetime:
        return today - timedelta(days=n)

    # a: active today and yesterday; b: active today and 20 days ago; c: active 10 days ago only;
    # d: first seen today.
    plan = {"a": [0, 1], "b": [0, 20], "c": [10], "d": [0]}
    events = [
        wire_event(u, "Lesson Completed", day(n), mid=f"{u}-{n}") for u, days in plan.items() for n in days
    ]
    await produce_events(stack.bootstrap, topics[EVENTS], events)
    seg = segmenter_factory(CONFIG)
    seg.start()
    await seg.wait_ready()

    async def active() -> dict[str, object] | None:
        body = await seg.get("/v1/analytics/active")
        return body if body["mau"] == 4 else None

    body = await eventually(active, timeout=30)
    assert (body["dau"], body["wau"], body["mau"]) == (3, 3, 4)
    assert body["stickiness"] == 0.75

    daily = await seg.get("/v1/analytics/lifecycle", interval="day", periods=3)
    last = daily["periods"][-1]  # today
    assert (last["new"], last["returning"], last["resurrecting"]) == (1, 1, 1)  # d; a; b
    yesterday = daily["periods"][-2]
    assert (yesterday["new"], yesterday["returning"], yesterday["resurrecting"]) == (1, 0, 0)  # a's first day
    assert last["dormant"] == 0  # nobody active yesterday went missing today

    retention = await seg.get("/v1/analytics/retention", interval="day", periods=21)
    by_start = {c["start"]: c for c in retention["cohorts"]}
    b_cohort = by_start[day(20).date().isoformat()]
    assert b_cohort["size"] == 1 and b_cohort["retained"][20] == 1 and b_cohort["retained"][1] == 0
    a_cohort = by_start[day(1).date().isoformat()]
    assert a_cohort["size"] == 1 and a_cohort["retained"] == [1, 1]

    stages = await seg.get("/v1/stages")
    assert stages["total"] == 4
    page = await seg.get("/v1/users", limit=2)
    assert [u["userId"] for u in page["users"]] == ["a", "b"]
    assert page["next"] == "b"
    rest = await seg.get("/v1/users", limit=2, after=page["next"])
    assert [u["userId"] for u in rest["users"]] == ["c", "d"] and rest["next"] is None
    transitions = await seg.get("/v1/analytics/transitions", days=1)
    assert sum(t["count"] for t in transitions["transitions"]) >= 4
