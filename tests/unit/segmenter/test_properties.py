"""Property tests of the lifecycle: one stage always, a function of facts and time, exact
deadlines, and replay equal to step-by-step application."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.decide import StageChange, apply_event, apply_timer
from services.segmenter.domain.lifecycle import STAGES, compute_stage, next_deadline, stage_at
from services.segmenter.domain.replay import replay
from services.segmenter.domain.state import UserState
from shared.events import Event
from tests.unit.segmenter.histories import USERS, histories

EPSILON = timedelta(microseconds=1)
CFG = SegmenterConfig.model_validate(
    {
        "activation": {
            "any_of": [
                {"event": "Order Completed"},
                {"event": "Lesson Completed", "count": 3, "within": "7d"},
            ]
        },
        "activity": {"passive_events": ["Push Received"]},
        "signup": {"event": "Signed Up"},
        "segments": [
            {"name": "learners", "rule": {"event": "Lesson Completed", "count": 2, "within": "7d"}},
            {"name": "no_order", "rule": {"not_done": "Order Completed", "within": "20d"}},
        ],
    }
)
EPSILON = timedelta(microseconds=1)


def apply_all(events: list[Event], now: datetime | None = None) -> tuple[UserState, list[Any]]:
    state: UserState | None = None
    history: list[StageChange] = []
    for ev in events:
        d = apply_event(state, ev, CFG, now or ev.timestamp)
        state = d.state
        history += d.history
        assert state.stage in STAGES
    assert state is not None
    return state, history


def assert_chain(history: list[StageChange]) -> None:
    """Each change starts where the last one ended, never back in time, never a no-op."""
    for before, after in itertools.pairwise(history):
        assert after.from_stage == before.to_stage
        assert after.at >= before.at
    assert all(h.from_stage != h.to_stage for h in history)
    if history:
        assert history[0].from_stage is None


@settings(max_examples=150, deadline=None)
@given(histories(), st.lists(st.integers(0, 200 * 24), max_size=4))
def test_exactly_one_stage_at_every_instant(events: list[Event], later_hours: list[int]) -> None:
    state, history = apply_all(events)
    last = events[-1].timestamp
    for hours in sorted(later_hours):
        d = apply_timer(state, CFG, last + timedelta(hours=hours))
        history += d.history
        assert state.stage in STAGES
        assert state.stage == compute_stage(state, CFG, last + timedelta(hours=hours))[0]
    assert_chain(history)
    assert history[-1].to_stage == state.stage


@settings(max_examples=150, deadline=None)
@given(histories(), st.randoms(use_true_random=False), st.integers(0, 120 * 24))
def test_stage_is_a_function_of_facts_and_time(events: list[Event], rnd: Any, hours_after: int) -> None:
    in_order, _ = apply_all(events)
    shuffled = list(events)
    rnd.shuffle(shuffled)
    end = max(e.timestamp for e in events)
    late, _ = apply_all(shuffled, now=end)  # every event arrives late, in any order
    for field in ("first_seen", "last_activity_at", "runs", "signup_at", "activated_at"):
        assert getattr(late, field) == getattr(in_order, field), field
    instants = [e.timestamp for e in events] + [end + timedelta(hours=hours_after)]
    for at in instants:
        assert compute_stage(late, CFG, at) == compute_stage(in_order, CFG, at)
    assert late.stage == compute_stage(in_order, CFG, end)[0]


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(0, 150 * 24 * 60))
def test_next_deadline_is_exact(events: list[Event], minutes_after: int) -> None:
    state, _ = apply_all(events)
    now = events[-1].timestamp + timedelta(minutes=minutes_after)
    current = stage_at(state, CFG, now)
    deadline = next_deadline(state, CFG, now)
    if deadline is None:
        for days in (1, 30, 400, 4000):
            assert stage_at(state, CFG, now + timedelta(days=days)) == current
        return
    assert deadline > now
    assert stage_at(state, CFG, deadline - EPSILON) == current
    assert stage_at(state, CFG, now + (deadline - now) / 2) == current
    assert stage_at(state, CFG, deadline) != current


@settings(max_examples=100, deadline=None)
@given(histories(users=USERS, max_size=30), st.integers(0, 120 * 24))
def test_replay_equals_step_by_step_application(events: list[Event], hours_after: int) -> None:
    until = max(e.timestamp for e in events) + timedelta(hours=hours_after)
    result = replay(events, CFG, until=until, keep_history=True)
    for user in {e.key for e in events}:
        own = [e for e in events if e.key == user]
        state, history = apply_all(own)  # no timers at all: changes caught up by later inputs
        final = apply_timer(state, CFG, until)
        history += final.history
        replayed = [h for h in result.history if h.user_id == user]
        assert [(h.from_stage, h.to_stage, h.at, h.event_id) for h in replayed] == [
            (h.from_stage, h.to_stage, h.at, h.event_id) for h in history
        ]
        assert result.states[user].stage == state.stage == stage_at(state, CFG, until)
        assert_chain(replayed)
