"""The timer path's shortcuts give what the full path gives: `apply_timer` reuses the stage and
deadline its catch-up found instead of computing them again at `now`, and spells its input id
only when an output needs it. The reference below is the path without those shortcuts."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.decide import (
    MAX_CATCH_UP,
    Decision,
    _change_stage,
    _settle,
    apply_timer,
    idle_input_id,
)
from services.segmenter.domain.lifecycle import compute_stage, next_deadline
from services.segmenter.domain.state import UserState
from shared.events import Event
from tests.unit.segmenter.histories import histories
from tests.unit.segmenter.test_properties import CFG, apply_all


def full_apply_timer(state: UserState, cfg: SegmenterConfig, now: datetime, due_at: datetime) -> Decision:
    """`apply_timer` computing every stage and deadline from scratch."""
    decision = Decision(state)
    at = state.as_of
    if state.stage is not None and at is not None:
        for _ in range(MAX_CATCH_UP):
            deadline = next_deadline(state, cfg, at)
            if deadline is None or deadline > now:
                break
            stage, reason = compute_stage(state, cfg, deadline)
            _change_stage(decision, cfg, stage, reason, deadline, idle_input_id(state.user_id, deadline))
            at = deadline
        state.as_of = at
    _settle(decision, cfg, now, idle_input_id(state.user_id, due_at))
    return decision


def assert_same(fast: Decision, full: Decision) -> None:
    assert fast.state.to_dict() == full.state.to_dict()
    assert fast.history == full.history
    assert [e.to_wire() for e in fast.events] == [e.to_wire() for e in full.events]
    assert fast.next_timer_at == full.next_timer_at
    assert (fast.activity_day, fast.amount_rejected, fast.nps) == (
        full.activity_day,
        full.amount_rejected,
        full.nps,
    )


@settings(max_examples=300, deadline=None)
@given(
    histories(),
    st.lists(st.integers(min_value=0, max_value=200 * 24 * 60), min_size=1, max_size=4),
    st.booleans(),
)
def test_apply_timer_equals_the_full_path(events: list[Event], offsets: list[int], at_deadline: bool) -> None:
    """Timers firing at random later instants (or exactly at each next timer instant, as the
    runtime fires them) leave the same state, history, outputs and next timer."""
    state, _ = apply_all(events)
    now = events[-1].timestamp
    for minutes in sorted(offsets):
        fast_state, full_state = state.copy(), state.copy()
        if at_deadline:
            probe = apply_timer(state.copy(), CFG, now)
            now = probe.next_timer_at or now + timedelta(minutes=minutes)
        else:
            now = now + timedelta(minutes=minutes)
        due_at = now - timedelta(seconds=minutes % 7)  # the due instant may precede the firing
        fast = apply_timer(fast_state, CFG, now, due_at=due_at)
        full = full_apply_timer(full_state, CFG, now, due_at)
        assert_same(fast, full)
        state = fast.state


@settings(max_examples=100, deadline=None)
@given(histories(), st.integers(min_value=0, max_value=10))
def test_apply_timer_on_a_state_far_behind_equals_the_full_path(events: list[Event], years: int) -> None:
    """A state not evaluated for years (more changes than one call may catch up) agrees too."""
    state, _ = apply_all(events)
    now = events[-1].timestamp + timedelta(days=365 * years + 1)
    assert_same(apply_timer(state.copy(), CFG, now), full_apply_timer(state.copy(), CFG, now, now))
