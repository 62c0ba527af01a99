"""Condition trees compiled once into plain functions of `SegmentFacts` (no per-event dispatch).

Semantics: a missing value (unknown trait, no RFM scores) fails every comparison except `ne`
(true) and `exists: false` (true); values of incomparable types (text against a number) compare
false rather than fail.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from services.segmenter.domain.conditions import (
    AllOf,
    AnyOf,
    Condition,
    EventCountCondition,
    FieldCondition,
    NotDoneCondition,
    NotOf,
    TraitCondition,
)
from services.segmenter.domain.state import UserState


@dataclass(slots=True)
class SegmentFacts:
    """What a condition can look at: the state and the decisions already made at `now`."""

    state: UserState
    now: datetime
    today: int
    stage: str
    core: bool
    rfm: list[int] | None
    rfm_segment: str | None


Predicate = Callable[[SegmentFacts], bool]

MISSING: Final[Any] = object()
_OPS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def _rfm_getter(index: int) -> Callable[[SegmentFacts], Any]:
    return lambda f: None if f.rfm is None else f.rfm[index]


_FIELDS: Final[dict[str, Callable[[SegmentFacts], Any]]] = {
    "stage": lambda f: f.stage,
    "activated": lambda f: f.state.activated_at is not None,
    "core": lambda f: f.core,
    "first_seen_age": lambda f: f.now - f.state.first_seen,
    "signup_age": lambda f: f.now - (f.state.signup_at or f.state.first_seen),
    "idle": lambda f: f.now - (f.state.last_activity_at or f.state.first_seen),
    "revenue": lambda f: f.state.revenue,
    "orders": lambda f: f.state.orders,
    "r": _rfm_getter(0),
    "f": _rfm_getter(1),
    "m": _rfm_getter(2),
    "rfm_segment": lambda f: f.rfm_segment,
    "timezone": lambda f: f.state.timezone,
}


def comparator(op: str, expected: Any) -> Callable[[Any], bool]:
    """`value op expected` as a one-argument function, with the missing-value rules above."""
    if op == "exists":
        want = bool(expected)
        return lambda v: (v is not MISSING and v is not None) == want
    if op == "in":
        return lambda v: v is not MISSING and v is not None and v in expected
    if op == "contains":

        def contains(v: Any) -> bool:
            if isinstance(v, str):
                return isinstance(expected, str) and expected in v
            return isinstance(v, (list, tuple)) and expected in v

        return contains
    fn = _OPS[op]
    when_missing = op == "ne"

    def compare(v: Any) -> bool:
        if v is MISSING or v is None:
            return when_missing
        try:
            return bool(fn(v, expected))
        except TypeError:
            return False

    return compare


def compile_condition(node: Condition) -> Predicate:
    """The tree as one function; built once per config, called per event."""
    if isinstance(node, AllOf):
        return _all_of(tuple(compile_condition(c) for c in _cheapest_first(node.all)))
    if isinstance(node, AnyOf):
        return _any_of(tuple(compile_condition(c) for c in _cheapest_first(node.any)))
    if isinstance(node, NotOf):
        inner = compile_condition(node.not_)
        return lambda f: not inner(f)
    if isinstance(node, FieldCondition):
        get, test = _FIELDS[node.field], comparator(node.op, node.value)
        return lambda f: test(get(f))
    if isinstance(node, TraitCondition):
        name, test = node.trait, comparator(node.op, node.value)
        return lambda f: test(f.state.traits.get(name, MISSING))
    if isinstance(node, EventCountCondition):
        return _event_count(node)
    return _not_done(node)


def _cost(node: Condition) -> int:
    """How much a condition costs to test: a field or a trait is a lookup, `not_done` one
    subtraction, an event count a loop over days; a tree, its dearest part."""
    if isinstance(node, FieldCondition | TraitCondition):
        return 0
    if isinstance(node, NotDoneCondition):
        return 1
    if isinstance(node, EventCountCondition):
        return 3
    if isinstance(node, NotOf):
        return _cost(node.not_)
    parts = node.all if isinstance(node, AllOf) else node.any
    return max((_cost(c) for c in parts), default=0)


def _cheapest_first(parts: Sequence[Condition]) -> list[Condition]:
    """`parts` in the order to test them: every test is pure and total (it never raises), so
    `all`/`any` give the same answer in any order, and a cheap part may settle it first."""
    return sorted(parts, key=_cost)


def _all_of(parts: tuple[Predicate, ...]) -> Predicate:
    def all_of(f: SegmentFacts) -> bool:
        for part in parts:  # noqa: SIM110 -- a plain loop beats all(<genexpr>) per event
            if not part(f):
                return False
        return True

    return all_of


def _any_of(parts: tuple[Predicate, ...]) -> Predicate:
    def any_of(f: SegmentFacts) -> bool:
        for part in parts:  # noqa: SIM110 -- a plain loop beats any(<genexpr>) per event
            if part(f):
                return True
        return False

    return any_of


def _event_count(node: EventCountCondition) -> Predicate:
    event, span, test = node.event, node.within.days, comparator(node.op, node.count)

    def count_in_window(f: SegmentFacts) -> bool:
        total = 0
        days = f.state.event_days.get(event)
        if days:
            oldest = f.today - span + 1
            for day, n in days.items():
                if day >= oldest:
                    total += n
        return test(total)

    return count_in_window


def _not_done(node: NotDoneCondition) -> Predicate:
    event, within = node.not_done, node.within

    def not_done(f: SegmentFacts) -> bool:
        last = f.state.last_done.get(event)
        return last is None or f.now - last >= within

    return not_done
