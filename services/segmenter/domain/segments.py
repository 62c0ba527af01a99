"""Value layers and custom segments: RFM scores, core users, condition trees (DESIGN.md §4).

RFM scores and core membership carry hysteresis (they depend on the previous decision), so users
at a boundary do not flap. Custom segments are plain functions of facts, stage and `now`.
`next_segment_check` gives the earliest instant at which time alone may change a membership.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.segmenter.config import RfmConfig, SegmenterConfig
from services.segmenter.domain.conditions import (
    AllOf,
    AnyOf,
    Condition,
    EventCountCondition,
    FieldCondition,
    NotOf,
    TraitCondition,
)
from services.segmenter.domain.state import UserState, day_start, epoch_day

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Membership:
    """The value-layer decisions at one instant."""

    segments: list[str]
    """Sorted names of every segment the user is in (custom, RFM segment, core)."""
    rfm: list[int] | None
    rfm_segment: str | None
    core: bool


def _score(value: float, breakpoints: list[float]) -> int:
    return 1 + sum(1 for b in breakpoints if value >= b)


def _settle(strict: int, lenient: int, previous: int | None) -> int:
    """Take a better score at once; a worse one only when even the lenient score is worse."""
    if previous is None or strict > previous:
        return strict
    return lenient if lenient < previous else previous


def rfm_scores(
    state: UserState, rc: RfmConfig, now: datetime, previous: list[int] | None
) -> list[int] | None:
    """[r, f, m] scores 1-5 with hysteresis against `previous`; None for users without orders."""
    if not rc.enabled or state.last_order_at is None:
        return None
    h = rc.hysteresis
    recency = max(now - state.last_order_at, timedelta(0))
    r_strict = 5 - sum(1 for b in rc.recency if recency >= b)
    r_lenient = 5 - sum(1 for b in rc.recency if recency >= b * (1 + h))
    oldest = epoch_day(now) - rc.window.days + 1
    orders = 0.0
    revenue = 0.0
    for day, (count, amount) in state.order_days.items():
        if day >= oldest:
            orders += count
            revenue += amount
    f_strict = _score(orders, rc.frequency)
    f_lenient = _score(orders, [b * (1 - h) for b in rc.frequency])
    m_strict = _score(revenue, rc.monetary)
    m_lenient = _score(revenue, [b * (1 - h) for b in rc.monetary])
    prev = previous if previous is not None else [None, None, None]
    return [
        _settle(r_strict, r_lenient, prev[0]),
        _settle(f_strict, f_lenient, prev[1]),
        _settle(m_strict, m_lenient, prev[2]),
    ]


def core_days(state: UserState, cfg: SegmenterConfig, now: datetime) -> list[int]:
    """Activity days inside the core window ending today (UTC)."""
    oldest = epoch_day(now) - cfg.core.window.days + 1
    days = state.activity_days
    return days[bisect_left(days, oldest) :]


def is_core(state: UserState, cfg: SegmenterConfig, now: datetime, was_core: bool) -> bool:
    if not cfg.core.enabled:
        return False
    active = len(core_days(state, cfg, now))
    return active >= (cfg.core.stay_days if was_core else cfg.core.enter_days)


@dataclass(slots=True)
class _Facts:
    state: UserState
    now: datetime
    today: int
    stage: str
    core: bool
    rfm: list[int] | None
    rfm_segment: str | None


def _profile_value(name: str, f: _Facts) -> Any:
    s = f.state
    if name == "stage":
        return f.stage
    if name == "activated":
        return s.activated_at is not None
    if name == "core":
        return f.core
    if name == "first_seen_age":
        return f.now - s.first_seen
    if name == "signup_age":
        return f.now - (s.signup_at or s.first_seen)
    if name == "idle":
        return f.now - (s.last_activity_at or s.first_seen)
    if name == "revenue":
        return s.revenue
    if name == "orders":
        return s.orders
    if name in ("r", "f", "m"):
        return None if f.rfm is None else f.rfm[("r", "f", "m").index(name)]
    if name == "rfm_segment":
        return f.rfm_segment
    return s.timezone  # "timezone": the only other field the config admits


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if op == "exists":
        return (actual is not _MISSING and actual is not None) == bool(expected)
    if actual is _MISSING or actual is None:
        return op == "ne"
    try:
        if op == "eq":
            return bool(actual == expected)
        if op == "ne":
            return bool(actual != expected)
        if op == "gt":
            return bool(actual > expected)
        if op == "gte":
            return bool(actual >= expected)
        if op == "lt":
            return bool(actual < expected)
        if op == "lte":
            return bool(actual <= expected)
        if op == "in":
            return actual in expected
        if isinstance(actual, str):  # contains
            return isinstance(expected, str) and expected in actual
        return isinstance(actual, (list, tuple)) and expected in actual
    except TypeError:
        return False  # incomparable types (e.g. a text trait against a number)


def holds(node: Condition, f: _Facts) -> bool:
    """Evaluate a condition tree against one user's facts."""
    if isinstance(node, AllOf):
        return all(holds(c, f) for c in node.all)
    if isinstance(node, AnyOf):
        return any(holds(c, f) for c in node.any)
    if isinstance(node, NotOf):
        return not holds(node.not_, f)
    if isinstance(node, FieldCondition):
        return _compare(_profile_value(node.field, f), node.op, node.value)
    if isinstance(node, TraitCondition):
        return _compare(f.state.traits.get(node.trait, _MISSING), node.op, node.value)
    if isinstance(node, EventCountCondition):
        oldest = f.today - node.within.days + 1
        days = f.state.event_days.get(node.event)
        count = sum(n for d, n in days.items() if d >= oldest) if days else 0
        return _compare(count, node.op, node.count)
    last = f.state.last_done.get(node.not_done)
    return last is None or f.now - last >= node.within


def evaluate(state: UserState, cfg: SegmenterConfig, now: datetime, stage: str) -> Membership:
    """Every segment decision at `now`, given the stage at `now` and the previous decisions."""
    rfm = rfm_scores(state, cfg.rfm, now, state.rfm)
    core = is_core(state, cfg, now, cfg.core.name in state.segments)
    facts = _Facts(state, now, epoch_day(now), stage, core, rfm, None)
    if rfm is not None:
        for named in cfg.rfm.segments:
            if holds(named.rule, facts):
                facts.rfm_segment = named.name
                break
    names = [s.name for s in cfg.segments if holds(s.rule, facts)]
    if facts.rfm_segment is not None:
        names.append(facts.rfm_segment)
    if core:
        names.append(cfg.core.name)
    names.sort()
    return Membership(names, rfm, facts.rfm_segment, core)


def next_segment_check(state: UserState, cfg: SegmenterConfig, now: datetime) -> datetime | None:
    """The earliest instant after `now` at which time alone may change a segment decision.

    Conservative: a recheck there may find nothing changed, but nothing changes earlier (stage
    changes excepted: `lifecycle.next_deadline` covers those).
    """
    d = cfg.derived
    today = epoch_day(now)
    candidates: list[datetime] = []
    for event, window in d.counted_windows:
        counts = state.event_days.get(event)
        if counts:
            inside = [day for day in counts if day > today - window]
            if inside:
                candidates.append(day_start(min(inside) + window))
    for event, within in d.not_done:
        last = state.last_done.get(event)
        if last is not None:
            candidates.append(last + within)
    for field, age in d.age_thresholds:
        if field == "first_seen_age":
            candidates.append(state.first_seen + age)
        elif field == "signup_age":
            candidates.append((state.signup_at or state.first_seen) + age)
        else:
            candidates.append((state.last_activity_at or state.first_seen) + age)
    if cfg.rfm.enabled and state.last_order_at is not None:
        rc = cfg.rfm
        candidates += [state.last_order_at + b for b in rc.recency]
        candidates += [state.last_order_at + b * (1 + rc.hysteresis) for b in rc.recency]
        inside = [day for day in state.order_days if day > today - rc.window.days]
        if inside:
            candidates.append(day_start(min(inside) + rc.window.days))
    if cfg.core.enabled and cfg.core.name in state.segments:
        active = core_days(state, cfg, now)
        leaving = len(active) - cfg.core.stay_days + 1  # days that must leave to drop below stay
        if 0 < leaving <= len(active):
            candidates.append(day_start(active[leaving - 1] + cfg.core.window.days))
    future = [c for c in candidates if c > now]
    return min(future) if future else None
