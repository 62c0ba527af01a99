"""NPS answers through the real process: traits, the detractors segment, weekly NPS analytics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.nps import week_start
from tests.conftest import Stack, eventually
from tests.integration.segmenter.conftest import SegmenterFactory
from tests.integration.segmenter.harness import produce_events, wire_event
from tests.integration.segmenter.test_reliability import CONFIG, _drained, _fetch

EVENTS = "userops.events.v1"


async def test_nps_traits_segment_and_weekly_analytics(
    stack: Stack, topics: dict[str, str], database: str, segmenter_factory: SegmenterFactory
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    monday = datetime.combine(week_start(now), datetime.min.time(), tzinfo=UTC)
    this_week = monday + (now - monday) / 2  # inside this ISO week, not in the future
    last_week = monday - timedelta(days=2)  # the Saturday before

    def nps(user: str, at: datetime, score: object, mid: str) -> dict[str, object]:
        return wire_event(user, "NPS Submitted", at, mid=mid, properties={"score": score, "comment": "c"})

    events = [
        # Last week: u1 answers twice (only the latest, a 2, counts), u2 a 9, u3 a 7.
        nps("u1", last_week - timedelta(hours=3), 10, "u1-a"),
        nps("u1", last_week - timedelta(hours=1), 2, "u1-b"),
        nps("u2", last_week, 9, "u2-a"),
        nps("u3", last_week, 7, "u3-a"),
        # u3's older answer arrives late: neither its trait nor last week's count takes it.
        nps("u3", last_week - timedelta(hours=5), 0, "u3-late"),
        # This week: u1 a 9, u2 a 4, u4 a 10 and then an invalid score (ignored).
        nps("u1", this_week, 9, "u1-c"),
        nps("u2", this_week, 4, "u2-b"),
        nps("u4", this_week - timedelta(minutes=1), 10, "u4-a"),
        nps("u4", this_week, "NaN", "u4-bad"),
        wire_event("u4", "Feedback Submitted", this_week, mid="u4-fb", properties={"text": "more"}),
    ]
    await produce_events(stack.bootstrap, topics[EVENTS], events)
    seg = segmenter_factory(CONFIG)
    seg.start()
    await seg.wait_ready()
    await eventually(lambda: _drained(database, len(events)), timeout=60, interval=0.5)

    rows = await _fetch(database, "SELECT user_id, score FROM nps_responses ORDER BY user_id, at")
    assert [(r["user_id"], r["score"]) for r in rows] == [
        ("u1", 10), ("u1", 2), ("u1", 9), ("u2", 9), ("u2", 4), ("u3", 0), ("u3", 7), ("u4", 10),
    ]  # fmt: skip

    body = await seg.get("/v1/analytics/nps", weeks=3)
    weeks = body["weeks"]
    assert [w["start"] for w in weeks] == [
        (week_start(now) - timedelta(days=7 * k)).isoformat() for k in (2, 1, 0)
    ]
    assert weeks[0] == {"start": weeks[0]["start"], "responses": 0, "promoters": 0, "passives": 0,
                        "detractors": 0, "nps": None}  # fmt: skip
    last, this = weeks[1], weeks[2]
    assert (last["responses"], last["promoters"], last["passives"], last["detractors"]) == (3, 1, 1, 1)
    assert last["nps"] == 0.0
    assert (this["responses"], this["promoters"], this["passives"], this["detractors"]) == (3, 2, 0, 1)
    assert this["nps"] == 33.3

    def traits(user: dict[str, object]) -> dict[str, object]:
        profile = user["profile"]
        assert isinstance(profile, dict)
        return {k: v for k, v in profile["traits"].items() if k.startswith(("nps_", "feedback_"))}

    u2 = await seg.get("/v1/users/u2")
    assert traits(u2)["nps_score"] == 4 and traits(u2)["nps_category"] == "detractor"
    assert "detractors" in {s["segment"] for s in u2["segments"]}
    u3 = await seg.get("/v1/users/u3")
    assert (traits(u3)["nps_score"], traits(u3)["nps_category"]) == (7, "passive")
    assert "detractors" not in {s["segment"] for s in u3["segments"]}
    u4 = await seg.get("/v1/users/u4")
    assert (traits(u4)["nps_score"], traits(u4)["nps_category"]) == (10, "promoter")
    assert datetime.fromisoformat(str(traits(u4)["feedback_at"])) == this_week
    assert datetime.fromisoformat(str(traits(u4)["nps_at"])) == this_week - timedelta(minutes=1)
    members = await seg.get("/v1/users", segment="detractors")
    assert [u["userId"] for u in members["users"]] == ["u2"]
