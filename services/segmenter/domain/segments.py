"""Value layers and custom segments: RFM scores, core users, condition trees (DESIGN.md §4).

RFM scores and core membership carry hysteresis (they depend on the previous decision), so users
at a boundary do not flap. Custom segments are plain functions of facts, stage and `now`.
`next_segment_check` gives the earliest instant at which time alone may change a membership.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.predicates import SegmentFacts
from services.segmenter.domain.state import UserState, day_start, epoch_day


@dataclass(frozen=True, slots=True)
class Membership:
    """The value-layer decisions at one instant."""

    segments: list[str]
    """Sorted names of every segment the user is in (custom, RFM segment, core)."""
    rfm: list[int] | None
    rfm_segment: str | None
    core: bool


def _score(value: Any, breakpoints: Sequence[Any]) -> int:
    """1 + how many (ascending) breakpoints `value` reaches."""
    score = 1
    for b in breakpoints:
        if value < b:
            break
        score += 1
    return score


def _settle(strict: int, lenient: int, previous: int) -> int:
    """Take a better score at once; a worse one only when even the lenient score is worse."""
    if strict > previous:
        return strict
    return lenient if lenient < previous else previous


def rfm_scores(
    state: UserState, cfg: SegmenterConfig, now: datetime, previous: list[int] | None
) -> list[int] | None:
    """[r, f, m] scores 1-5 with hysteresis against `previous`; None for users without orders."""
    rc = cfg.rfm
    if not rc.enabled or state.last_order_at is None:
        return None
    d = cfg.derived
    recency = now - state.last_order_at
    oldest = epoch_day(now) - rc.window.days + 1
    orders = 0.0
    revenue = 0.0
    for day, (count, amount) in state.order_days.items():
        if day >= oldest:
            orders += count
            revenue += amount
    r_strict = 6 - _score(recency, rc.recency)
    r_lenient = 6 - _score(recency, d.recency_lenient)
    if previous is None:
        return [r_strict, _score(orders, rc.frequency), _score(revenue, rc.monetary)]
    return [
        _settle(r_strict, r_lenient, previous[0]),
        _settle(_score(orders, rc.frequency), _score(orders, d.frequency_lenient), previous[1]),
        _settle(_score(revenue, rc.monetary), _score(revenue, d.monetary_lenient), previous[2]),
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


def evaluate(state: UserState, cfg: SegmenterConfig, now: datetime, stage: str) -> Membership:
    """Every segment decision at `now`, given the stage at `now` and the previous decisions."""
    d = cfg.derived
    rfm = rfm_scores(state, cfg, now, state.rfm)
    core = is_core(state, cfg, now, cfg.core.name in state.segments)
    facts = SegmentFacts(state, now, epoch_day(now), stage, core, rfm, None)
    if rfm is not None and d.rfm_rules_scores_only and rfm == state.rfm:
        facts.rfm_segment = state.rfm_segment  # same scores, same first match
    elif rfm is not None:
        for name, rule in d.rfm_rules:
            if rule(facts):
                facts.rfm_segment = name
                break
    names = [name for name, rule in d.segment_rules if rule(facts)]
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
    midnights: list[int] = []  # epoch days whose start may change a window count
    for event, window in d.counted_windows:
        first = _first_day_after(state.event_days.get(event), today - window)
        if first is not None:
            midnights.append(first + window)
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
    last_order = state.last_order_at
    if cfg.rfm.enabled and last_order is not None:
        for breakpoints in (cfg.rfm.recency, d.recency_lenient):
            for b in breakpoints:
                if last_order + b > now:
                    candidates.append(last_order + b)
                    break
        window = cfg.rfm.window.days
        first = _first_day_after(state.order_days, today - window)
        if first is not None:
            midnights.append(first + window)
    if cfg.core.enabled and cfg.core.name in state.segments:
        active = core_days(state, cfg, now)
        leaving = len(active) - cfg.core.stay_days + 1  # days that must leave to drop below stay
        if 0 < leaving <= len(active):
            midnights.append(active[leaving - 1] + cfg.core.window.days)
    if midnights:
        candidates.append(day_start(min(midnights)))  # always after now: each day > today
    best: datetime | None = None
    for c in candidates:
        if c > now and (best is None or c < best):
            best = c
    return best


def _first_day_after(days: Iterable[int] | None, after: int) -> int | None:
    first: int | None = None
    for day in days or ():
        if day > after and (first is None or day < first):
            first = day
    return first
