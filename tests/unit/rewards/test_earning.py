"""Earning rules through `decide`: caps in the user's timezone, exact proportional points,
multipliers, budgets, pending points, reversals, lifecycle triggers, redemption and expiry."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.rewards.domain.awards import MissingBudget
from services.rewards.domain.decide import budgeted_rules, decide
from services.rewards.domain.outputs import (
    PointsAwarded,
    PointsExpired,
    PointsExpiringSoon,
    PointsRedeemed,
    PointsReversed,
    TierChanged,
)
from services.rewards.domain.rules import period_key
from services.rewards.domain.simulate import Replay
from services.rewards.domain.state import UserRewardsState
from tests.unit.rewards.support import (
    T0,
    command,
    config,
    day,
    example_config,
    of_type,
    reserve,
    stage,
    track,
)

CFG = example_config()


def awarded(replay: Replay, rule: str | None = None, user: str = "u1") -> list[PointsAwarded]:
    return [
        o
        for d in replay.decisions
        for o in of_type(d.outputs, PointsAwarded)
        if o.user_id == user and (rule is None or o.rule_id == rule)
    ]


def replay(cfg: object = CFG) -> Replay:
    r = Replay(cfg)  # type: ignore[arg-type]
    r.keep_decisions = True
    return r


def test_lessons_earn_10_each_and_at_most_50_per_local_day() -> None:
    r = replay()
    ny = {"timezone": "America/New_York"}
    local_evening = datetime(2024, 3, 1, 18, 0, tzinfo=ZoneInfo("America/New_York"))
    for i in range(6):  # 18:00-23:00 local on March 1st (already March 2nd in UTC from 19:00)
        r.feed(track("Lesson Completed", local_evening + timedelta(hours=i), traits=ny))
    for i in range(6):  # March 2nd local
        r.feed(track("Lesson Completed", local_evening + timedelta(hours=7 + i)))
    points = [a.points for a in awarded(r)]
    assert points == [10] * 10
    assert r.states["u1"].book.balances.available == 100
    assert [s.reason for d in r.decisions for s in d.skipped] == ["capped", "capped"]


def test_a_weekly_cap_counts_the_local_iso_week() -> None:
    rule = {"id": "quiz", "event": "Quiz Passed", "points": 30, "caps": [{"limit": 60, "period": "week"}]}
    r = replay(config(rules=[rule]))
    sunday = datetime(2024, 3, 3, 23, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # 22:30 UTC
    for i in range(3):
        r.feed(track("Quiz Passed", sunday - timedelta(hours=i), context={"timezone": "Europe/Berlin"}))
    r.feed(track("Quiz Passed", sunday + timedelta(hours=1)))  # Monday 00:30 local: a new week
    assert [a.points for a in awarded(r)] == [30, 30, 30]


def test_a_cap_truncates_the_last_award() -> None:
    rule = {"id": "read", "event": "Article Read", "points": 20, "caps": [{"limit": 50, "period": "day"}]}
    r = replay(config(rules=[rule]))
    for i in range(3):
        r.feed(track("Article Read", day(0, i)))
    assert [a.points for a in awarded(r)] == [20, 20, 10]


@pytest.mark.parametrize(
    ("revenue", "rounding", "points"),
    [
        (0.1999, "floor", 19),
        (0.29, "floor", 29),  # 0.29 * 100 is 28.999999999999996 in float arithmetic
        ("12.5", "half_up", 1250),
        (0.005, "half_even", 0),
        (0.015, "half_even", 2),
        (0.011, "ceil", 2),
    ],
)
def test_proportional_points_use_exact_decimals_and_the_stated_rounding(
    revenue: object, rounding: str, points: int
) -> None:
    rule = {
        "id": "buy",
        "event": "Order Completed",
        "proportional": {"property": "revenue", "points_per_unit": 100},
        "rounding": rounding,
    }
    r = replay(config(rules=[rule]))
    r.feed(track("Order Completed", T0, revenue=revenue))
    assert [a.points for a in awarded(r)] == ([points] if points else [])


@pytest.mark.parametrize("revenue", ["abc", "Infinity", "NaN", True, None, "1e30", -5, 0.5])
def test_bad_or_small_amounts_earn_nothing(revenue: object) -> None:
    r = replay()
    d = r.feed(track("Order Completed", T0, revenue=revenue, order_id="o"))
    assert not awarded(r)
    assert next(s.reason for s in d.skipped) in ("bad_amount", "below_minimum")


def test_gold_members_earn_one_and_a_half_points_per_unit() -> None:
    r = replay()
    r.feed(track("Order Completed", T0, revenue=5000, order_id="o1"))
    assert [o.to_tier for d in r.decisions for o in of_type(d.outputs, TierChanged)] == ["gold"]
    r.feed(track("Order Completed", day(1), revenue=19.99, order_id="o2"))
    assert [a.points for a in awarded(r, "purchase")] == [5000, 29]  # 29.985 floored


def test_conditions_and_multipliers_look_at_properties_traits_and_segments() -> None:
    rule = {
        "id": "course",
        "event": "Course Finished",
        "points": 10,
        "conditions": [
            {"property": "level", "op": "gte", "value": 2},
            {"trait": "plan", "op": "ne", "value": "trial"},
        ],
        "multipliers": [{"when": [{"field": "segment", "value": "core"}], "factor": 3}],
    }
    r = replay(config(rules=[rule]))
    r.feed(track("Course Finished", day(0), level=1))
    r.feed(track("Course Finished", day(1), level=2, traits={"plan": "trial"}))
    r.feed(track("Course Finished", day(2), level="2", traits={"plan": "pro"}))
    from services.rewards.domain.inputs import LifecycleInput

    r.feed(LifecycleInput("seg-1", "u1", "segment_entered", day(3), segment="core"))
    r.feed(track("Course Finished", day(4), level=3))
    assert [a.points for a in awarded(r)] == [10, 30]


def test_budget_stop_skips_what_does_not_fit_and_partial_awards_the_rest() -> None:
    for overflow, expected in (("stop", [40, 40]), ("partial", [40, 40, 20])):
        rule = {"id": "promo", "event": "Promo", "points": 40, "budget": {"limit": 100, "overflow": overflow}}
        r = replay(config(rules=[rule]))
        for i in range(4):
            r.feed(track("Promo", day(0, i), user=f"user{i}"))
        got = [a.points for d in r.decisions for a in of_type(d.outputs, PointsAwarded)]
        assert got == expected
        assert r.budgets["promo"] == 100 - sum(expected)


def test_a_budgeted_rule_needs_its_remaining_amount() -> None:
    rule = {"id": "promo", "event": "Promo", "points": 40, "budget": {"limit": 100, "overflow": "stop"}}
    cfg = config(rules=[rule])
    inp = track("Promo", T0)
    assert budgeted_rules(inp, cfg) == ["promo"]
    assert budgeted_rules(track("Other", T0), cfg) == []
    with pytest.raises(MissingBudget):
        decide(None, inp, cfg, T0)
    d = decide(None, inp, cfg, T0, {"promo": 39})
    assert d.budget_consumed == {} and [s.reason for s in d.skipped] == ["budget_exhausted"]


def test_pending_points_become_available_after_the_period_unless_refunded() -> None:
    r = replay()
    r.feed(track("Order Completed", T0, revenue=80, order_id="o1"))
    r.feed(track("Order Completed", T0, revenue=20, order_id="o2"))
    bal = r.states["u1"].book.balances
    assert (bal.pending, bal.available) == (100, 0)
    r.feed(track("Order Refunded", day(3), order_id="o2"))
    assert (bal.pending, bal.available) == (80, 0)
    r.advance(day(14))
    assert (bal.pending, bal.available) == (0, 80)
    reversed_ = [o for d in r.decisions for o in of_type(d.outputs, PointsReversed)]
    assert [(o.points, o.shortfall) for o in reversed_] == [(20, 0)]


def test_a_refund_after_the_points_were_spent_records_a_shortfall() -> None:
    r = replay()
    r.feed(track("Order Completed", T0, revenue=100, order_id="o1"))
    r.advance(day(14))
    hold = r.feed(reserve(100, day(15)))
    assert hold.hold_id is not None and hold.refused is None
    r.feed(command("confirm", hold.hold_id, day(15)))
    r.feed(track("Order Refunded", day(16), order_id="o1"))
    r.feed(track("Order Refunded", day(17), order_id="o1"))  # a second refund takes nothing more
    reversed_ = [o for d in r.decisions for o in of_type(d.outputs, PointsReversed)]
    assert [(o.points, o.shortfall, o.reverses) for o in reversed_] == [(100, 100, awarded(r)[0].id)]
    assert r.states["u1"].book.balances.debt == -100


def test_activation_pays_once_and_winback_pays_per_return() -> None:
    r = replay()
    r.feed(stage("activated", day(0)))
    r.feed(stage("active", day(7), activated=True))
    r.feed(stage("activated", day(8)))  # a replayed or repeated stage change: lifetime cap holds
    r.feed(stage("reactivated", day(60), activated=True))
    r.feed(stage("reactivated", day(120), activated=True))
    assert [(a.rule_id, a.points) for a in awarded(r)] == [
        ("activation_bonus", 100),
        ("winback", 200),
        ("winback", 200),
    ]
    assert r.budgets["winback"] == 1_000_000 - 400


def test_redemption_reserve_confirm_release_and_hold_expiry() -> None:
    r = replay()
    r.feed(stage("activated", T0))
    assert r.feed(reserve(150, day(0, 1))).refused == "insufficient_balance"
    assert r.feed(reserve(0, day(0, 1))).refused == "invalid_amount"
    first = r.feed(reserve(60, day(0, 1), key="k1"))
    assert first.hold_id is not None
    r.feed(command("confirm", first.hold_id, day(0, 1.1)))
    repeated = r.feed(reserve(60, day(0, 1.2), key="k1"))  # a retried request: the same hold, no new one
    assert (repeated.hold_id, repeated.refused, repeated.transactions) == (first.hold_id, None, [])
    assert r.feed(reserve(61, day(0, 1.2), key="k1")).refused == "idempotency_conflict"
    redeemed = [o for d in r.decisions for o in of_type(d.outputs, PointsRedeemed)]
    assert [o.points for o in redeemed] == [60]
    second = r.feed(reserve(40, day(0, 2)))
    assert second.hold_id is not None
    bal = r.states["u1"].book.balances
    assert (bal.available, bal.held) == (0, 40)
    r.advance(day(0, 3))  # the 15-minute hold expired and was released by its timer
    assert (bal.available, bal.held) == (40, 0)
    assert r.feed(command("confirm", second.hold_id, day(0, 3))).refused == "hold_not_open"
    late = r.feed(reserve(40, day(0, 4)))
    assert late.hold_id is not None
    state = r.states["u1"].copy()  # the hold's timer has not fired yet, but its time is up
    expired = decide(state, command("confirm", late.hold_id, day(0, 5)), CFG, day(0, 5))
    assert expired.refused == "hold_expired" and not of_type(expired.outputs, PointsRedeemed)
    assert (state.book.balances.available, state.book.balances.held) == (40, 0)


def test_points_warn_and_expire_on_time() -> None:
    r = replay()
    r.feed(stage("activated", T0))
    r.advance(T0 + timedelta(days=335))
    soon = [o for d in r.decisions for o in of_type(d.outputs, PointsExpiringSoon)]
    assert [(o.points, o.at) for o in soon] == [(100, T0 + timedelta(days=335))]
    r.advance(T0 + timedelta(days=365))
    expired = [o for d in r.decisions for o in of_type(d.outputs, PointsExpired)]
    assert [(o.points, o.rule_id, o.at) for o in expired] == [
        (100, "activation_bonus", T0 + timedelta(days=365))
    ]
    assert r.states["u1"].book.balances.available == 0


def test_output_ids_are_deterministic_and_carry_the_config_version() -> None:
    inp = track("Lesson Completed", T0)
    a = decide(UserRewardsState.new("u1"), inp, CFG, T0)
    b = decide(UserRewardsState.new("u1"), inp, CFG, T0)
    assert [o.id for o in a.outputs] == [o.id for o in b.outputs]
    assert [t.id for t in a.transactions] == [t.id for t in b.transactions]
    assert all(o.config_version == CFG.version for o in a.outputs)
    again = decide(a.state, inp, CFG, T0)  # the same award is never booked twice
    assert not of_type(again.outputs, PointsAwarded)


def test_a_future_timestamp_is_taken_as_now() -> None:
    d = decide(None, track("Lesson Completed", T0 + timedelta(days=3)), CFG, T0)
    assert [o.at for o in of_type(d.outputs, PointsAwarded)] == [T0]


ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Pacific/Auckland"]
LESSON_CAPS = {
    "id": "lesson",
    "event": "Lesson Completed",
    "points": 15,
    "caps": [
        {"limit": 50, "period": "day"},
        {"limit": 200, "period": "week"},
        {"limit": 500, "period": "lifetime"},
    ],
}
CAPPED = config(rules=[LESSON_CAPS])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 21 * 24 * 60), st.sampled_from(ZONES)), max_size=60))
def test_caps_are_never_exceeded_even_when_the_timezone_changes(lessons: list[tuple[int, str]]) -> None:
    r = Replay(CAPPED)
    used: dict[str, int] = {}
    total = 0
    for minute, zone in sorted(lessons):
        d = r.feed(track("Lesson Completed", T0 + timedelta(minutes=minute), traits={"timezone": zone}))
        for a in of_type(d.outputs, PointsAwarded):
            total += a.points
            for period in ("day", "week"):
                key = period_key(period, a.at, ZoneInfo(zone))
                used[key] = used.get(key, 0) + a.points
    assert all(n <= (50 if key.startswith("d:") else 200) for key, n in used.items())
    assert total <= 500
    assert r.states.get("u1") is None or all(
        n <= {"d": 50, "w": 200, "l": 500}[key[0]]
        for key, n in r.states["u1"].cap_usage.get("lesson", {}).items()
    )
