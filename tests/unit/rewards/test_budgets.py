"""Budgets: a rule never awards more than its budget across all users, whatever the overflow
policy; `stop` never splits an award; refunds give back exactly what they take."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.rewards.domain.outputs import PointsAwarded, PointsReversed
from services.rewards.domain.simulate import Replay
from tests.unit.rewards.support import T0, config, of_type, track


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 2000),
    st.sampled_from(["stop", "partial"]),
    st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(1, 700), st.booleans()), max_size=30),
)
def test_a_budget_is_never_exceeded(limit: int, overflow: str, orders: list[tuple[str, int, bool]]) -> None:
    rule = {
        "id": "sale",
        "event": "Order Completed",
        "proportional": {"property": "revenue", "points_per_unit": 1},
        "budget": {"limit": limit, "overflow": overflow},
        "reversed_by": {"event": "Order Refunded", "match": "order_id"},
    }
    r = Replay(config(rules=[rule]))
    r.keep_decisions = True
    net = 0
    for i, (user, revenue, refund) in enumerate(orders):
        at = T0 + timedelta(minutes=i)
        d = r.feed(track("Order Completed", at, user, revenue=revenue, order_id=f"o{i}", message_id=f"m{i}"))
        for award in of_type(d.outputs, PointsAwarded):
            assert award.points <= revenue
            if overflow == "stop":
                assert award.points == revenue
            net += award.points
        if refund:
            d = r.feed(track("Order Refunded", at, user, order_id=f"o{i}", message_id=f"r{i}"))
            net -= sum(o.points for o in of_type(d.outputs, PointsReversed))
        assert 0 <= net <= limit
        assert r.budgets["sale"] == limit - net >= 0
