"""Corrections through `decide`: refunds give budget back, debt is repaid by later awards,
lifecycle wire events parse, and the state stays bounded."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.rewards.domain.inputs import LifecycleInput
from services.rewards.domain.outputs import PointsAwarded, PointsReversed
from services.rewards.domain.simulate import Replay
from shared.contracts import ContractError
from tests.unit.rewards.support import T0, command, config, day, example_config, of_type, reserve, track

SALE = {
    "id": "sale",
    "event": "Order Completed",
    "proportional": {"property": "revenue", "points_per_unit": 1},
    "budget": {"limit": 500, "overflow": "partial"},
    "reversed_by": {"event": "Order Refunded", "match": "order_id"},
}


def test_a_refund_gives_the_points_back_to_the_budget() -> None:
    r = Replay(config(rules=[SALE]))
    r.feed(track("Order Completed", T0, revenue=300, order_id="a"))
    r.feed(track("Order Completed", T0, revenue=300, order_id="b", user="u2"))
    assert r.budgets["sale"] == 0  # the second order got the 200 left
    d = r.feed(track("Order Refunded", day(1), order_id="a"))
    assert d.budget_consumed == {"sale": -300}
    assert r.budgets["sale"] == 300


def test_debt_is_repaid_before_new_points_become_spendable() -> None:
    r = Replay(config(rules=[SALE]))
    r.keep_decisions = True
    r.feed(track("Order Completed", T0, revenue=100, order_id="a"))
    hold = r.feed(reserve(100, T0 + timedelta(minutes=1)))
    assert hold.hold_id is not None
    r.feed(command("confirm", hold.hold_id, T0 + timedelta(minutes=2)))
    r.feed(track("Order Refunded", day(1), order_id="a"))
    bal = r.states["u1"].book.balances
    assert (bal.available, bal.debt) == (0, -100)
    r.feed(track("Order Completed", day(2), revenue=60, order_id="b"))
    assert (bal.available, bal.debt) == (0, -40)
    r.feed(track("Order Completed", day(3), revenue=60, order_id="c"))
    assert (bal.available, bal.debt) == (20, 0)
    reversed_ = [o for d in r.decisions for o in of_type(d.outputs, PointsReversed)]
    assert [(o.points, o.shortfall, o.reason) for o in reversed_] == [(100, 100, "Order Refunded")]


def test_lifecycle_events_parse_from_the_segmenter_wire_form() -> None:
    inp = LifecycleInput.from_wire(
        "id-1",
        {"id": "e1", "type": "stage_changed", "userId": "u1", "from": "new", "to": "activated", "activated": True,
         "reason": "activation", "at": "2024-03-01T09:00:00.000Z", "configVersion": "abc"},
    )  # fmt: skip
    assert (inp.user_id, inp.from_stage, inp.to_stage, inp.activated, inp.at) == (
        "u1",
        "new",
        "activated",
        True,
        T0,
    )
    seg = LifecycleInput.from_wire(
        "id-2",
        {
            "id": "e2",
            "type": "segment_entered",
            "userId": "u1",
            "segment": "core",
            "at": "2024-03-01T09:00:00Z",
            "configVersion": "abc",
        },
    )
    assert seg.segment == "core"
    with pytest.raises(ContractError, match=r"userops\.lifecycle\.v1"):
        LifecycleInput.from_wire("id-3", {"type": "nope", "userId": "u1", "at": "2024-03-01T09:00:00Z"})


def test_the_state_stays_bounded_over_a_long_life() -> None:
    r = Replay(example_config())
    r.keep_decisions = True
    for i in range(3 * 365):
        r.feed(track("Lesson Completed", day(i), traits={"timezone": "Europe/Berlin"}))
    state = r.states["u1"]
    assert len(state.book.lots) <= 366  # expired lots are forgotten
    assert len(state.earned) <= 366  # only the tier window is kept
    assert len(state.cap_usage["lesson_completed"]) <= 9  # only periods that can still change
    assert len([o for d in r.decisions for o in of_type(d.outputs, PointsAwarded)]) == 3 * 365
