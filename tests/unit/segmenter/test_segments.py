"""Value layers (RFM, core) with hysteresis, and custom condition-tree segments."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.decide import apply_event
from services.segmenter.domain.segments import rfm_scores
from services.segmenter.domain.state import UserState
from tests.unit.segmenter.support import Journey, day, identify, page, track

OFF = {"rfm": {"enabled": False}, "core": {"enabled": False}}


def custom(rule: dict[str, Any], **extra: Any) -> SegmenterConfig:
    return SegmenterConfig.model_validate({**OFF, "segments": [{"name": "s", "rule": rule}], **extra})


def member(cfg: SegmenterConfig, *events: Any, now: Any = None) -> bool:
    state: UserState | None = None
    for ev in events:
        state = apply_event(state, ev, cfg, now or ev.timestamp).state
    assert state is not None
    return "s" in state.segments


@pytest.mark.parametrize(
    ("op", "value", "plan", "expected"),
    [
        ("eq", "pro", "pro", True),
        ("eq", "pro", "free", False),
        ("ne", "pro", "free", True),
        ("in", ["pro", "team"], "team", True),
        ("contains", "ro", "pro", True),
        ("exists", True, "free", True),
        ("exists", False, "free", False),
    ],
)
def test_trait_operators(op: str, value: Any, plan: str, expected: bool) -> None:
    cfg = custom({"trait": "plan", "op": op, "value": value})
    assert member(cfg, identify(day(0), plan=plan)) is expected


def test_missing_and_incomparable_traits() -> None:
    assert member(custom({"trait": "plan", "op": "ne", "value": "pro"}), page(day(0)))
    assert not member(custom({"trait": "plan", "op": "eq", "value": "pro"}), page(day(0)))
    assert not member(custom({"trait": "seats", "op": "gt", "value": 3}), identify(day(0), seats="x"))
    assert member(custom({"trait": "seats", "op": "gte", "value": 3}), identify(day(0), seats=3))
    assert member(custom({"trait": "tags", "op": "contains", "value": "vip"}),
                  identify(day(0), tags=["vip", "beta"]))  # fmt: skip


def test_latest_trait_wins_whatever_the_arrival_order() -> None:
    cfg = custom({"trait": "plan", "op": "eq", "value": "pro"})
    newer, older = identify(day(2), plan="pro"), identify(day(1), plan="free")
    assert member(cfg, newer, older, now=day(3))
    assert member(cfg, older, newer, now=day(3))


def test_event_count_in_rolling_window_enters_and_leaves_on_time() -> None:
    cfg = custom({"event": "Lesson Completed", "count": 3, "within": "7d"})
    j = Journey(cfg)
    for n in (0, 1, 2):
        j.send(track("Lesson Completed", day(n)))
    assert j.state is not None
    assert "s" in j.state.segments
    j.advance(day(20))
    exits = j.of_type("segment_exited")
    assert [e["segment"] for e in exits] == ["s"]
    # the day-0 lesson leaves the 7-day window at midnight UTC starting day 7 after it
    assert exits[0]["at"] == "2024-03-08T00:00:00.000Z"


def test_has_not_done_enters_exactly_when_due() -> None:
    cfg = custom({"not_done": "Lesson Completed", "within": "3d"})
    j = Journey(cfg)
    j.send(track("Lesson Completed", day(0)))
    assert j.state is not None
    assert "s" not in j.state.segments
    j.advance(day(5))
    entered = j.of_type("segment_entered")
    assert [e["at"] for e in entered] == ["2024-03-04T09:00:00.000Z"]  # last lesson + 3d
    j.send(track("Lesson Completed", day(5)))
    assert [e["segment"] for e in j.of_type("segment_exited")] == ["s"]


def test_never_done_counts_as_not_done() -> None:
    assert member(custom({"not_done": "Order Completed", "within": "30d"}), page(day(0)))


def test_tree_of_all_any_not_over_profile_fields() -> None:
    rule = {
        "all": [
            {"field": "stage", "op": "in", "value": ["at_risk", "dormant"]},
            {"any": [{"field": "revenue", "op": "gte", "value": 100}, {"trait": "vip", "op": "exists"}]},
            {"not": {"field": "activated", "op": "eq", "value": False}},
        ]
    }
    cfg = custom(rule)
    j = Journey(cfg)
    j.send(track("Order Completed", day(0), revenue=150))
    assert j.state is not None
    assert "s" not in j.state.segments
    j.advance(day(8))
    assert "s" in j.state.segments
    assert [e["at"] for e in j.of_type("segment_entered")] == ["2024-03-08T09:00:00.000Z"]


def test_age_fields_schedule_their_own_recheck() -> None:
    cfg = custom({"field": "first_seen_age", "op": "gte", "value": "2d"})
    j = Journey(cfg)
    j.send(page(day(0)))
    assert j.timer == day(2)
    j.advance(day(3))
    assert [e["at"] for e in j.of_type("segment_entered")] == ["2024-03-03T09:00:00.000Z"]


def rfm_cfg(**rfm: Any) -> SegmenterConfig:
    return SegmenterConfig.model_validate({"core": {"enabled": False}, "rfm": rfm})


def test_rfm_scores_from_breakpoints() -> None:
    cfg = rfm_cfg()
    state: UserState | None = None
    for n, amount in enumerate([100, 200, 300, 100, 50]):
        state = apply_event(state, track("Order Completed", day(n), revenue=amount), cfg, day(n)).state
    assert state is not None
    # 5 orders, 750 revenue, last order just now
    assert state.rfm == [5, 4, 4]
    assert state.rfm_segment == "champions"
    assert rfm_scores(state, cfg, day(4 + 100), None) == [2, 4, 4]
    assert rfm_scores(state, cfg, day(4 + 400), None) == [1, 1, 1]


def test_users_without_orders_have_no_rfm() -> None:
    state = apply_event(None, page(day(0)), rfm_cfg(), day(0)).state
    assert state.rfm is None
    assert state.rfm_segment is None


def test_monetary_hysteresis_takes_gains_at_once_and_losses_past_the_margin() -> None:
    cfg = rfm_cfg(monetary=[100, 200, 300, 400], hysteresis=0.1)
    state = apply_event(None, track("Order Completed", day(0), revenue=200), cfg, day(0)).state
    assert state.rfm is not None
    assert state.rfm[2] == 3
    state.order_days[next(iter(state.order_days))][1] = 185.0  # e.g. a partial refund
    assert rfm_scores(state, cfg, day(0), state.rfm)[2] == 3  # type: ignore[index]
    assert rfm_scores(state, cfg, day(0), None)[2] == 2  # type: ignore[index]
    state.order_days[next(iter(state.order_days))][1] = 179.0  # below 200 * 0.9
    assert rfm_scores(state, cfg, day(0), state.rfm)[2] == 2  # type: ignore[index]


def test_recency_drops_by_time_alone_past_the_margin() -> None:
    cfg = rfm_cfg(recency=["10d", "20d", "30d", "40d"], hysteresis=0.5)
    j = Journey(cfg)
    j.send(track("Order Completed", day(0), revenue=10))
    assert j.state is not None
    assert j.state.rfm is not None
    assert j.state.rfm[0] == 5
    j.advance(day(14))
    assert j.state.rfm[0] == 5  # 10d passed, but not 10d * 1.5
    j.advance(day(16))
    assert j.state.rfm[0] == 4  # at 15d exactly the timer recomputed


def core_cfg() -> SegmenterConfig:
    return SegmenterConfig.model_validate(
        {"rfm": {"enabled": False}, "core": {"window": "28d", "enter_days": 12, "stay_days": 10}}
    )


def test_core_users_enter_at_12_of_28_days_and_stay_down_to_10() -> None:
    j = Journey(core_cfg())
    for n in range(11):
        j.send(page(day(n)))
    assert j.state is not None
    assert "core" not in j.state.segments
    j.send(page(day(11)))
    assert "core" in j.state.segments
    # the active days 0..11 leave the window one per UTC midnight from March 29: 10 remain on March 30
    j.advance(day(29))
    assert "core" in j.state.segments
    j.advance(day(31))
    assert "core" not in j.state.segments
    assert [e["at"] for e in j.of_type("segment_exited")] == ["2024-03-31T00:00:00.000Z"]


def test_core_membership_does_not_flap_at_the_boundary() -> None:
    j = Journey(core_cfg())
    # 12 active days in a row, then one active day in two: the count hovers around 11-13
    days = list(range(12)) + list(range(13, 60, 2))
    for n in days:
        j.send(page(day(n)))
    entered = j.of_type("segment_entered")
    exited = j.of_type("segment_exited")
    assert len(entered) == 1
    assert not exited


def test_rfm_segment_changes_are_announced_once() -> None:
    cfg = rfm_cfg()
    j = Journey(cfg)
    j.send(track("Order Completed", day(0), revenue=20))
    assert j.state is not None
    assert j.state.rfm_segment == "new_customers"
    j.advance(day(300))
    assert j.state.rfm_segment == "hibernating"
    names = [(e["type"], e["segment"]) for e in j.outputs if e["type"] != "stage_changed"]
    assert names == [
        ("segment_entered", "new_customers"),
        ("segment_exited", "new_customers"),
        ("segment_entered", "hibernating"),
    ]


def test_segment_event_shape() -> None:
    d = apply_event(None, identify(day(0), plan="pro"), custom({"trait": "plan", "op": "exists"}), day(0))
    entered = [e.to_wire() for e in d.events if e.type == "segment_entered"]
    assert entered == [  # the wire format of before typed contracts, plus schemaVersion
        {
            "schemaVersion": 1,
            "id": entered[0]["id"],
            "type": "segment_entered",
            "userId": "u1",
            "segment": "s",
            "at": "2024-03-01T09:00:00.000Z",
            "configVersion": "dev",
        }
    ]
    assert d.state.segments == ["s"]
    assert timedelta(0) < (d.next_timer_at or day(999)) - day(0)
