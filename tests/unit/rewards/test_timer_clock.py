"""A due timer does not move the user's clock (`as_of`): during a backlog catch-up a timer due at
T may fire before the user's events from more than 8 days before T are consumed, and those
events must still be awarded within their cap window, not dropped as too old."""

from __future__ import annotations

from datetime import timedelta

from services.rewards.domain.decide import decide
from services.rewards.domain.inputs import TimerInput, TimerKind
from services.rewards.domain.outputs import PointsAwarded
from tests.unit.rewards.support import T0, day, example_config, of_type, track


def test_a_pending_release_timer_firing_during_a_backlog_does_not_drop_older_queued_lessons() -> None:
    cfg = example_config()
    order = decide(None, track("Order Completed", T0, revenue=40, order_id="o1"), cfg, T0)
    state = order.state
    (release,) = [t for t in order.timers if t.kind is TimerKind.PENDING_RELEASE]
    assert release.due_at == day(14)
    # The consumer lags: the timer worker fires the release at day 14 while the user's
    # lessons of day 2 (12 days earlier) are still queued.
    fired = decide(state, TimerInput(release), cfg, day(14, 1))
    assert state.book.balances.available == 40  # the timer did its job
    assert state.as_of == T0, "a timer moved the user's clock"
    awarded = []
    for i in range(6):
        d = decide(state, track("Lesson Completed", day(2, i)), cfg, day(14, 2))
        awarded += of_type(d.outputs, PointsAwarded)
    assert not of_type(fired.outputs, PointsAwarded)
    assert [a.points for a in awarded] == [10] * 5  # all within the day's cap of 50, the 6th capped
    assert state.book.balances.available == 40 + 50
    assert state.as_of == day(2, 5)


def test_timers_still_apply_at_their_own_instant_and_a_new_user_gets_a_clock() -> None:
    cfg = example_config()
    order = decide(None, track("Order Completed", T0, revenue=40, order_id="o1"), cfg, T0)
    (release,) = [t for t in order.timers if t.kind is TimerKind.PENDING_RELEASE]
    fresh = decide(None, TimerInput(release), cfg, day(14) + timedelta(minutes=1))
    assert fresh.state.as_of == day(14)  # a state seen first through a timer starts at its instant
    assert fresh.transactions == []  # nothing to release on a state without the lot
