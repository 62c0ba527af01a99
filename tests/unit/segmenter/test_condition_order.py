"""Compiled `all`/`any` trees test their cheap parts first; the answer is the one of testing
every part in the written order (each test is pure and never raises)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from services.segmenter.domain.conditions import AllOf, AnyOf, Condition, NotOf
from services.segmenter.domain.lifecycle import STAGES
from services.segmenter.domain.predicates import SegmentFacts, compile_condition
from services.segmenter.domain.state import UserState, epoch_day
from shared.events import Event
from tests.unit.segmenter.histories import histories
from tests.unit.segmenter.test_properties import apply_all

CONDITION: TypeAdapter[Any] = TypeAdapter(Condition)

LEAVES = [
    {"field": "stage", "op": "in", "value": ["active", "at_risk"]},
    {"field": "stage", "op": "eq", "value": "new"},
    {"field": "activated", "op": "eq", "value": False},
    {"field": "idle", "op": "gte", "value": "3d"},
    {"field": "signup_age", "op": "lt", "value": "10d"},
    {"field": "orders", "op": "gte", "value": 1},
    {"field": "r", "op": "gte", "value": 3},
    {"field": "timezone", "op": "exists"},
    {"trait": "plan", "op": "in", "value": ["pro", "team"]},
    {"trait": "plan", "op": "ne", "value": "free"},
    {"trait": "age", "op": "gt", "value": 3},
    {"event": "Lesson Completed", "count": 2, "within": "7d"},
    {"event": "Page Viewed", "count": 1, "op": "lt", "within": "3d"},
    {"not_done": "Order Completed", "within": "20d"},
    {"not_done": "Lesson Completed", "within": "2d"},
]

trees = st.recursive(
    st.sampled_from(LEAVES),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=4)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=4)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=8,
)


def in_written_order(node: Any, facts: SegmentFacts) -> bool:
    """Every part tested, in the written order, no short cut."""
    if isinstance(node, AllOf):
        return all([in_written_order(c, facts) for c in node.all])
    if isinstance(node, AnyOf):
        return any([in_written_order(c, facts) for c in node.any])
    if isinstance(node, NotOf):
        return not in_written_order(node.not_, facts)
    return compile_condition(node)(facts)


@settings(max_examples=300, deadline=None)
@given(
    trees,
    histories(),
    st.sampled_from(STAGES),
    st.integers(min_value=0, max_value=60 * 24 * 40),
    st.sampled_from([None, "pro", "free", 7, [1, 2]]),
)
def test_cheap_first_gives_the_written_order_answer(
    tree: Any, events: list[Event], stage: str, minutes: int, plan: Any
) -> None:
    state, _ = apply_all(events)
    if plan is not None:
        state.traits["plan"] = plan
    now = events[-1].timestamp + timedelta(minutes=minutes)
    facts = SegmentFacts(state, now, epoch_day(now), stage, False, state.rfm, None)
    node = CONDITION.validate_python(tree)
    assert compile_condition(node)(facts) == in_written_order(node, facts)


class _Uncounted(dict[str, dict[int, int]]):
    def get(self, *args: Any) -> Any:
        raise AssertionError("the days were counted")


def test_an_event_count_is_tested_after_a_field() -> None:
    """The stage settles `all` (and `any`) before any day is counted."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    state = UserState.new("u", now)
    state.event_days = _Uncounted()
    facts = SegmentFacts(state, now, epoch_day(now), "active", False, None, None)
    count = {"event": "Lesson Completed", "count": 5, "within": "7d"}
    assert not compile_condition(
        CONDITION.validate_python({"all": [count, {"field": "stage", "op": "eq", "value": "new"}]})
    )(facts)
    assert compile_condition(
        CONDITION.validate_python({"any": [count, {"field": "stage", "op": "eq", "value": "active"}]})
    )(facts)
