"""Tiers: promotion at once, demotion only at a period end after the grace period, the tier a
pure function of earned history and time, and spending never demoting."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.rewards.domain.outputs import PointsAwarded, TierChanged
from services.rewards.domain.simulate import Replay
from services.rewards.domain.state import EarnedPoints
from services.rewards.domain.tiers import tier_at
from tests.unit.rewards.support import T0, command, config, day, example_config, of_type, reserve, track

CFG = example_config()


def tier_moves(r: Replay) -> list[tuple[str, str, object]]:
    return [(o.from_tier, o.to_tier, o.at) for d in r.decisions for o in of_type(d.outputs, TierChanged)]


def test_promotion_is_immediate_and_demotion_waits_for_period_end_and_grace() -> None:
    r = Replay(CFG)
    r.keep_decisions = True
    r.feed(track("Order Completed", T0, revenue=1200, order_id="o1"))
    assert tier_moves(r) == [("member", "silver", T0)]
    # Reviews at 90d+30d, 180d+30d, 270d+30d keep silver (1200 still in the 365-day window);
    # the review at 360d+30d finds it gone and demotes.
    r.advance(T0 + timedelta(days=389))
    assert tier_moves(r) == [("member", "silver", T0)]
    r.advance(T0 + timedelta(days=390))
    assert tier_moves(r)[1:] == [("silver", "member", T0 + timedelta(days=390))]
    assert r.states["u1"].tier.period_end is None


def test_earning_back_during_grace_keeps_the_tier() -> None:
    r = Replay(config(tiers={"window": "30d", "period": "30d", "grace": "10d", "levels": [
        {"name": "member", "min_points": 0}, {"name": "silver", "min_points": 100}]}))  # fmt: skip
    r.keep_decisions = True
    r.feed(track("Order Completed", T0, revenue=100, order_id="a"))
    r.feed(track("Order Completed", day(35), revenue=100, order_id="b"))  # below at 30d, back in grace
    r.advance(day(200))
    moves = tier_moves(r)
    assert moves[0] == ("member", "silver", T0)
    # Review at 30d+10d: the 35d points count, silver kept; review at 60d+10d: nothing in (40d, 70d].
    assert moves[1:] == [("silver", "member", day(70))]


def test_spending_never_demotes() -> None:
    r = Replay(CFG)
    r.keep_decisions = True
    r.feed(track("Order Completed", T0, revenue=6000, order_id="o1"))
    r.advance(day(14))
    hold = r.feed(reserve(6000, day(15)))
    assert hold.hold_id is not None
    r.feed(command("confirm", hold.hold_id, day(15)))
    r.advance(day(200))
    assert r.states["u1"].book.balances.available == 0
    assert [m[1] for m in tier_moves(r)] == ["gold"]


SMALL = config(
    rules=[{"id": "earn", "event": "Earn", "proportional": {"property": "n", "points_per_unit": 1}}],
    tiers={
        "window": "30d",
        "period": "10d",
        "grace": "3d",
        "levels": [
            {"name": "member", "min_points": 0},
            {"name": "silver", "min_points": 100},
            {"name": "gold", "min_points": 300},
        ],
    },
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 120 * 24), st.integers(1, 250), st.integers(0, 300)), max_size=25),
    st.integers(0, 160 * 24),
)
def test_tier_is_a_pure_function_of_earned_history_and_time_and_spending_never_demotes(
    earns: list[tuple[int, int, int]], end_hours: int
) -> None:
    end = T0 + timedelta(hours=end_hours)
    runs = []
    for spend in (False, True):
        r = Replay(SMALL)
        r.keep_decisions = True
        for hour, points, cost in sorted(earns):
            at = T0 + timedelta(hours=hour)
            if at > end:
                break
            r.feed(track("Earn", at, n=points))
            if spend and cost:
                hold = r.feed(reserve(cost, at + timedelta(minutes=1)))
                if hold.refused is None and hold.hold_id is not None:
                    r.feed(command("confirm", hold.hold_id, at + timedelta(minutes=2)))
        r.advance(end)
        history = [
            EarnedPoints(o.at, o.points, o.id) for d in r.decisions for o in of_type(d.outputs, PointsAwarded)
        ]
        assert SMALL.tiers is not None
        status, moves = tier_at(history, SMALL.tiers, end)
        state = r.states.get("u1")
        if state is not None:
            assert (state.tier.level, state.tier.period_end) == (status.level, status.period_end)
        names = [level.name for level in SMALL.tiers.levels]
        expected = [(names[m.from_level], names[m.to_level], m.at) for m in moves]
        assert tier_moves(r) == expected
        runs.append(expected)
    assert runs[0] == runs[1]  # the same earned history with spending in between: the same tiers
