"""Badges from counts and totals, one-time and repeatable."""

from __future__ import annotations

from services.rewards.domain.outputs import BadgeEarned, PointsAwarded
from services.rewards.domain.simulate import Replay
from tests.unit.rewards.support import config, day, of_type, track

BADGES = [
    {"id": "first-lesson", "event": "Lesson Completed", "count": 1, "points": 5},
    {"id": "ten-lessons", "event": "Lesson Completed", "count": 10, "repeatable": True},
    {"id": "big-spender", "event": "Order Completed", "total": {"property": "revenue", "at_least": 100}},
    {
        "id": "patron",
        "event": "Order Completed",
        "total": {"property": "revenue", "at_least": "49.99"},
        "repeatable": True,
    },
]
CFG = config(rules=[], badges=BADGES)


def earned(r: Replay) -> list[tuple[str, int]]:
    return [(o.badge, o.times) for d in r.decisions for o in of_type(d.outputs, BadgeEarned)]


def test_count_badges_once_and_repeatedly() -> None:
    r = Replay(CFG)
    r.keep_decisions = True
    for i in range(25):
        r.feed(track("Lesson Completed", day(i)))
    assert earned(r) == [("first-lesson", 1), ("ten-lessons", 1), ("ten-lessons", 2)]
    points = [(o.rule_id, o.points) for d in r.decisions for o in of_type(d.outputs, PointsAwarded)]
    assert points == [("badge:first-lesson", 5)]


def test_total_badges_sum_exact_amounts_and_ignore_bad_ones() -> None:
    r = Replay(CFG)
    r.keep_decisions = True
    for revenue in (49.98, "abc", float("1e308"), 0.01, -20, 50.0):
        r.feed(track("Order Completed", day(1), revenue=revenue))
    # 49.98 + 0.01 = 49.99 exactly (patron once); + 50 = 99.99: patron again at 99.98, not big-spender
    assert earned(r) == [("patron", 1), ("patron", 2)]
    r.feed(track("Order Completed", day(2), revenue=0.01))
    assert earned(r)[-1] == ("big-spender", 1)


def test_one_input_cannot_flood_the_outbox() -> None:
    cfg = config(
        rules=[],
        badges=[
            {"id": "cent", "event": "Tip", "total": {"property": "v", "at_least": "0.01"}, "repeatable": True}
        ],
    )
    r = Replay(cfg)
    r.keep_decisions = True
    r.feed(track("Tip", day(0), v=10**9))
    assert len(earned(r)) == 100
