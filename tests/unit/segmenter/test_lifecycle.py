"""Lifecycle stages and transitions (DESIGN.md §4), driven through the decide functions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.decide import IDLE_TIMER, apply_event, apply_timer
from services.segmenter.domain.lifecycle import compute_stage, next_deadline
from shared import ids, topics
from shared.events import format_ts
from tests.unit.segmenter.support import Journey, day, event, identify, page, track

NO_SEGMENTS = {"rfm": {"enabled": False}, "core": {"enabled": False}}


def cfg(**overrides: object) -> SegmenterConfig:
    return SegmenterConfig.model_validate({**NO_SEGMENTS, **overrides})


def test_full_journey_visits_every_stage_at_exact_instants() -> None:
    j = Journey(cfg())
    j.send(identify(day(0)))
    assert j.stage == "new"
    j.send(track("Order Completed", day(1), revenue=10))
    assert j.stage == "activated"
    for n in range(2, 9):
        j.send(page(day(n)))
    assert j.stage == "active"
    j.advance(day(200))
    assert j.stage == "churned"
    j.send(page(day(201)))
    assert j.stage == "reactivated"
    for n in range(202, 210):
        j.send(page(day(n)))
    assert j.stage == "active"
    assert j.stage_path() == [
        None, "new", "activated", "active", "at_risk", "dormant", "churned", "reactivated", "active",
    ]  # fmt: skip
    at = {(h.from_stage, h.to_stage): h.at for h in j.history}
    assert at[("new", "activated")] == day(1)
    assert at[("activated", "active")] == day(8)  # activation + 7d; active the day before
    assert at[("active", "at_risk")] == day(8) + timedelta(days=7)  # last activity + 7d
    assert at[("at_risk", "dormant")] == day(8) + timedelta(days=30)
    assert at[("dormant", "churned")] == day(8) + timedelta(days=90)
    assert at[("churned", "reactivated")] == day(201)
    assert at[("reactivated", "active")] == day(208)  # held 7d


def test_every_change_is_one_event_and_one_history_row() -> None:
    j = Journey(cfg())
    j.send(identify(day(0)))
    j.send(page(day(3)))
    j.advance(day(150))
    j.send(page(day(151)))
    changes = j.of_type("stage_changed")
    assert len(changes) == len(j.history) == 6
    assert [c["id"] for c in changes] == [h.event_id for h in j.history]
    assert len({c["id"] for c in changes}) == len(changes)
    for c, h in zip(changes, j.history, strict=True):
        assert (c["from"], c["to"], c["reason"], c["at"]) == (
            h.from_stage,
            h.to_stage,
            h.reason,
            format_ts(h.at),
        )
        assert c["userId"] == "u1"
        assert c["configVersion"] == "dev"


def test_reasons_say_why() -> None:
    j = Journey(cfg())
    j.send(identify(day(0)))
    j.advance(day(100))
    reasons = {h.to_stage: h.reason for h in j.history}
    assert reasons == {
        "new": "not activated, signed up < 7d ago",
        "at_risk": "idle >= 7d",
        "dormant": "idle >= 30d",
        "churned": "idle >= 90d",
    }
    j.send(page(day(100, hours=6)))
    assert j.history[-1].reason == "active again after 100d6h idle"


def test_never_activated_users_flow_through_idle_stages_and_back() -> None:
    j = Journey(cfg())
    j.send(page(day(0)))
    j.advance(day(12))
    assert j.stage == "at_risk"
    assert j.state is not None
    assert not j.state.activated
    j.send(page(day(12)))  # 12 days idle: not a reactivation gap
    assert j.stage == "active"


def test_not_activated_but_active_after_new_window() -> None:
    j = Journey(cfg())
    for n in range(0, 10):
        j.send(page(day(n)))
    assert j.stage_path() == [None, "new", "active"]
    assert j.history[-1].at == day(7)


def test_return_after_short_gap_is_active_not_reactivated() -> None:
    j = Journey(cfg())
    j.send(page(day(0)))
    j.advance(day(29))
    assert j.stage == "at_risk"
    j.send(page(day(29)))
    assert j.stage == "active"


def test_return_after_gap_at_threshold_is_reactivated() -> None:
    j = Journey(cfg())
    j.send(page(day(0)))
    j.send(page(day(30)))
    assert j.stage_path()[-2:] == ["dormant", "reactivated"]


def test_first_activity_long_after_first_sighting_is_a_reactivation() -> None:
    j = Journey(cfg())
    j.send(identify(day(0)))  # seen (e.g. imported), not active
    j.send(page(day(40)))
    assert j.stage == "reactivated"


def test_activity_in_same_run_does_not_extend_the_reactivated_hold() -> None:
    j = Journey(cfg())
    j.send(page(day(0)))
    j.send(page(day(40)))
    j.send(page(day(45)))
    j.send(page(day(46)))
    j.advance(day(47, hours=1))
    assert j.history[-1].to_stage == "active"
    assert j.history[-1].at == day(47)


@pytest.mark.parametrize(
    ("events", "activated"),
    [
        ([("Order Completed", 0.5)], True),
        ([("Lesson Completed", 1), ("Lesson Completed", 2), ("Lesson Completed", 6.9)], True),
        ([("Lesson Completed", 1), ("Lesson Completed", 2)], False),
        ([("Lesson Completed", 1), ("Lesson Completed", 2), ("Lesson Completed", 7.5)], False),
    ],
)
def test_activation_condition(events: list[tuple[str, float]], activated: bool) -> None:
    rules = {
        "any_of": [
            {"event": "Order Completed"},
            {"event": "Lesson Completed", "count": 3, "within": "7d"},
        ]
    }
    j = Journey(cfg(activation=rules))
    j.send(identify(day(0)))
    for name, at in events:
        j.send(track(name, day(at)))
    assert j.state is not None
    assert j.state.activated is activated
    assert ("activated" in j.stage_path()) is activated


def test_activation_window_counts_from_the_signup_event() -> None:
    c = cfg(
        signup={"event": "Signed Up"},
        activation={"any_of": [{"event": "Lesson Completed", "count": 2, "within": "3d"}]},
    )
    j = Journey(c)
    j.send(page(day(0)))  # browsing before signing up
    j.send(track("Signed Up", day(5)))
    assert j.state is not None
    assert j.state.signup_at == day(5)
    j.send(track("Lesson Completed", day(6)))
    j.send(track("Lesson Completed", day(7)))
    assert j.state.activated_at == day(7)
    assert j.stage == "activated"


def test_signup_from_a_trait_timestamp() -> None:
    c = cfg(signup={"trait": "createdAt"})
    j = Journey(c)
    j.send(identify(day(10), createdAt=format_ts(day(1))))
    assert j.state is not None
    assert j.state.signup_at == day(1)
    assert j.stage == "active"  # signed up 9 days ago: no longer new
    assert compute_stage(j.state, c, day(1))[0] == "new"  # the same facts, seen on signup day


def test_passive_events_are_not_activity() -> None:
    c = cfg(activity={"passive_events": ["Push Notification Received"]})
    j = Journey(c)
    j.send(page(day(0)))
    j.send(track("Push Notification Received", day(6)))
    j.send(track("Email Opened", day(6), passive=True))
    assert j.state is not None
    assert j.state.last_activity_at == day(0)
    j.advance(day(7))
    assert j.stage == "at_risk"
    assert j.activity_days == [day(0).date()]


def test_identify_is_not_activity_by_default() -> None:
    j = Journey(cfg())
    d = j.send(identify(day(0), plan="pro"))
    assert d.activity_day is None
    assert j.state is not None
    assert j.state.last_activity_at is None


def test_future_timestamps_clamp_to_now() -> None:
    c = cfg()
    now = day(3)
    d = apply_event(None, page(now + timedelta(days=2)), c, now)
    assert d.state.last_activity_at == now
    assert d.activity_day == now.date()
    within = apply_event(None, page(now + timedelta(minutes=4)), c, now)
    assert within.state.last_activity_at == now + timedelta(minutes=4)


def test_late_event_updates_counters_but_does_not_move_user_back() -> None:
    j = Journey(cfg())
    j.send(page(day(0)))
    j.send(page(day(20)))
    assert j.stage == "active"
    changes = len(j.history)
    d = j.send(page(day(5)), now=day(21))
    assert j.stage == "active"
    assert len(j.history) == changes
    assert d.activity_day == day(5).date()
    assert j.state is not None
    assert j.state.last_activity_at == day(20)


def test_late_event_filling_a_gap_follows_the_facts() -> None:
    late = Journey(cfg())
    late.send(page(day(0)))
    late.send(page(day(40)))
    assert late.stage == "reactivated"
    late.send(page(day(20)), now=day(41))  # the gap was never 30 days after all
    ordered = Journey(cfg())
    for n in (0, 20, 40):
        ordered.send(page(day(n)))
    ordered.advance(day(41))
    assert late.stage == ordered.stage == "active"


def test_catch_up_applies_each_missed_change_at_its_deadline() -> None:
    c = cfg()
    first = apply_event(None, page(day(0)), c, day(0))
    assert first.next_timer_at == day(7)
    late = apply_timer(first.state, c, day(40), due_at=day(7))  # the service was down
    assert [(h.from_stage, h.to_stage, h.at) for h in late.history] == [
        ("new", "at_risk", day(7)),
        ("at_risk", "dormant", day(30)),
    ]
    assert late.next_timer_at == day(90)


def test_time_driven_ids_do_not_depend_on_who_noticed() -> None:
    c = cfg()
    by_timer = apply_event(None, page(day(0), user="u1"), c, day(0)).state
    by_event = by_timer.copy()
    timer = apply_timer(by_timer, c, day(7), due_at=day(7))
    caught = apply_event(by_event, page(day(8)), c, day(8))
    assert timer.events[0].id == caught.events[0].id
    assert timer.events[0].id == ids.output_id(
        ids.timer_input_id(IDLE_TIMER, "u1", day(7)), "stage:new->at_risk"
    )


def test_event_driven_ids_are_deterministic() -> None:
    c = cfg()
    ev = event("page", day(0), message_id="fixed-1")
    a = apply_event(None, ev, c, day(0))
    b = apply_event(None, ev, c, day(0))
    assert a.events == b.events
    assert a.events[0].id == ids.output_id(ids.input_id(topics.EVENTS, "u1", "fixed-1"), "stage:None->new")


def test_the_same_message_id_from_two_users_gives_distinct_output_ids() -> None:
    """Defect 3: output ids derive from the scoped input id, not the bare messageId."""
    c = cfg(segments=[{"name": "everyone", "rule": {"field": "stage", "op": "in", "value": ["new"]}}])
    a = apply_event(None, event("page", day(0), user="alice", message_id="signup-1"), c, day(0))
    b = apply_event(None, event("page", day(0), user="bob", message_id="signup-1"), c, day(0))
    assert len(a.events) == len(b.events) >= 1
    assert not {e.id for e in a.events} & {e.id for e in b.events}
    assert a.history[0].event_id != b.history[0].event_id


def test_next_deadline_is_none_when_time_cannot_change_the_stage() -> None:
    c = cfg()
    state = apply_event(None, page(day(0)), c, day(0)).state
    assert next_deadline(state, c, day(100)) is None
    assert apply_timer(state, c, day(100)).next_timer_at is None


def test_short_thresholds_work_in_seconds() -> None:
    c = cfg(
        lifecycle={
            "at_risk_after": "10s",
            "dormant_after": "30s",
            "churned_after": "90s",
            "reactivation_gap": "30s",
            "reactivated_hold": "5s",
            "new_window": "20s",
            "activated_window": "5s",
        }
    )
    j = Journey(c)
    j.send(page(day(0)))
    j.advance(day(0) + timedelta(seconds=95))
    assert j.stage_path() == [None, "new", "at_risk", "dormant", "churned"]
    assert j.history[-1].at == day(0) + timedelta(seconds=90)
