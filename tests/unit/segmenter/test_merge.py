"""Alias merge: anonymous history moves to the user, counted once; and the JSON round trip."""

from __future__ import annotations

from typing import Any

from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.decide import apply_event
from services.segmenter.domain.identity import identity_link, profile_id
from services.segmenter.domain.merge import merge_alias
from services.segmenter.domain.state import UserState, epoch_day
from tests.unit.segmenter.support import day, event, identify, page, track

CFG = SegmenterConfig.model_validate(
    {
        "segments": [
            {"name": "lessons", "rule": {"event": "Lesson Completed", "count": 2, "within": "7d"}},
            {"name": "idle_buyer", "rule": {"not_done": "Order Completed", "within": "30d"}},
        ],
    }
)


def build(*events: Any) -> UserState:
    state: UserState | None = None
    for ev in events:
        state = apply_event(state, ev, CFG, ev.timestamp).state
    assert state is not None
    return state


def anon(kind: str, at: Any, **kw: Any) -> Any:
    return event(kind, at, None, anonymous="anon-1", **kw)


def test_history_and_counters_move_to_the_user() -> None:
    a = build(
        anon("page", day(0)),
        anon("track", day(1), name="Lesson Completed"),
        anon("track", day(1), name="Order Completed", properties={"revenue": 30}),
    )
    u = build(
        track("Lesson Completed", day(2), user="u1"),
        track("Order Completed", day(3), user="u1", revenue=20),
    )
    merged = merge_alias(a, u, CFG, "u1")
    assert merged.user_id == "u1"
    assert merged.aliases == ["anon-1"]
    assert merged.first_seen == day(0)
    assert merged.orders == 2
    assert merged.revenue == 50.0
    assert merged.event_days["Lesson Completed"] == {epoch_day(day(1)): 1, epoch_day(day(2)): 1}
    assert merged.activity_days == [epoch_day(day(n)) for n in range(4)]
    assert merged.activation_times["Order Completed"] == [day(1)]
    assert merged.activated_at == day(1)
    assert merged.last_done["Order Completed"] == day(3)


def test_merging_twice_does_not_double_count() -> None:
    a = build(anon("track", day(0), name="Order Completed", properties={"revenue": 30}))
    u = build(track("Order Completed", day(1), user="u1", revenue=20))
    once = merge_alias(a, u, CFG, "u1")
    snapshot = once.to_json()
    twice = merge_alias(a, once, CFG, "u1")
    assert twice.to_json() == snapshot
    assert twice.orders == 2


def test_merge_into_a_new_profile_renames_and_keeps_decisions() -> None:
    a = build(anon("page", day(0)))
    merged = merge_alias(a, None, CFG, "u9")
    assert merged.user_id == "u9"
    assert merged.aliases == ["anon-1"]
    assert merged.stage == a.stage == "new"
    assert a.user_id == "anon-1"  # the anonymous profile itself is untouched


def test_anonymous_activity_fills_the_users_gap() -> None:
    """The user looked idle for 40 days, but they were browsing logged out: no comeback."""
    a = build(anon("page", day(20)))
    u = build(page(day(0)), page(day(40)))
    assert u.stage == "reactivated"
    merged = merge_alias(a, u, CFG, "u1")
    assert [[r[0], r[1]] for r in merged.runs] == [[day(0), day(40)]]
    after = apply_event(merged, page(day(40, hours=1)), CFG, day(40, hours=1))
    assert after.state.stage == "active"
    assert [(h.from_stage, h.to_stage) for h in after.history] == [("reactivated", "active")]


def test_traits_merge_latest_wins() -> None:
    a = build(event("identify", day(5), None, anonymous="anon-1", traits={"plan": "pro", "tz": 1}))
    u = build(identify(day(3), plan="free", name="Ada"))
    merged = merge_alias(a, u, CFG, "u1")
    assert merged.traits == {"plan": "pro", "tz": 1, "name": "Ada"}


def test_identity_rules() -> None:
    alias = event("alias", day(0), "u1", previous_id="anon-1")
    assert identity_link(alias) == ("anon-1", "u1")
    both = event("track", day(0), "u1", name="X", anonymous="anon-2")
    assert identity_link(both) == ("anon-2", "u1")
    assert identity_link(event("page", day(0), None, anonymous="anon-3")) is None
    assert profile_id(event("page", day(0), None, anonymous="anon-2"), {"anon-2": "u1"}) == "u1"
    assert profile_id(both, {}) == "u1"


def test_json_round_trip_is_exact() -> None:
    state = build(
        identify(day(0), plan="pro", timezone="Europe/Paris", nested={"a": [1, 2]}),
        page(day(0, hours=0.0001)),
        track("Lesson Completed", day(1)),
        track("Order Completed", day(2), revenue="12.5"),
        page(day(45)),
    )
    assert state.timezone == "Europe/Paris"
    data = state.to_json()
    again = UserState.from_json(data)
    assert again == state
    assert again.to_json() == data
    assert state.copy() == state
    assert state.copy() is not state
