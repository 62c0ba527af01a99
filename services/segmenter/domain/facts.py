"""Recording what an event tells about a user, and merging two users' facts (alias).

Facts are kept so that the lifecycle stage is a function of *which* events happened, not of the
order they arrived in: minima/maxima, sorted sets, sums and activity runs all come out the same
whatever the arrival order (bounded structures aside, see `MAX_RUNS` and the day windows).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple

import orjson

from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.state import UserState, epoch_day, storable
from shared.events import Event
from shared.nps import category, parse_score

NPS_EVENT: Final = "NPS Submitted"
"""A survey answer: `properties.score` (integer 0-10) and an optional `properties.comment`."""
FEEDBACK_EVENT: Final = "Feedback Submitted"
"""Free-form feedback; recorded as activity and as the `feedback_at` trait."""
NPS_TRAITS: Final = ("nps_score", "nps_category", "nps_at")
"""Traits an answer sets together (latest answer by event time wins): score, category, ISO time."""

MAX_RUNS: Final = 32
"""Activity runs kept per user; older runs fold into `pruned_run_end` (one per comeback)."""

_TRUE_FLAGS: Final = (True, "true", "True", 1)

MAX_AMOUNT: Final = 1e15
"""The largest order amount taken (in absolute value): a quadrillion in any currency unit."""
MAX_TOTAL: Final = 1e18
"""Revenue sums saturate here (in absolute value), far below float overflow: a user's totals
stay finite, so stored state always round-trips (JSON has no NaN or Infinity)."""


class Recorded(NamedTuple):
    """What `record_event` found worth reporting."""

    new_day: int | None
    """The epoch day of the activity if `state` had not recorded that day yet, else None."""
    amount_rejected: bool = False
    """The order's amount was present but unusable (`order_amount` gave None)."""
    nps_score: int | None = None
    """The score of a valid `NPS Submitted` answer (whether or not it became the latest)."""


def is_activity(event: Event, cfg: SegmenterConfig) -> bool:
    """Whether `event` counts as activity (DESIGN §4: track/page/screen not marked passive)."""
    d = cfg.derived
    if event.type not in d.activity_types:
        return False
    if event.type == "track" and event.event in d.passive_events:
        return False
    flag = cfg.activity.passive_property
    return not (flag is not None and event.properties.get(flag) in _TRUE_FLAGS)


def record_event(
    state: UserState, event: Event, ts: datetime, cfg: SegmenterConfig, now: datetime
) -> Recorded:
    """Add the facts of `event` (effective time `ts`) to `state`.

    Returns the epoch day of the activity if the event is activity on a day `state` had not
    recorded yet (the day analytics should count), and whether an order amount was rejected.
    """
    if ts < state.first_seen:
        state.first_seen = ts
    if ts > state.last_seen:
        state.last_seen = ts
    if event.traits:
        _record_traits(state, event.traits, ts)
    tz = event.context.get("timezone")
    if isinstance(tz, str) and tz and "timezone" not in event.traits:
        _record_timezone(state, tz, ts)
    new_day: int | None = None
    if is_activity(event, cfg):
        if state.last_activity_at is None or ts > state.last_activity_at:
            state.last_activity_at = ts
        state.pruned_run_end = insert_activity(
            state.runs, state.pruned_run_end, ts, cfg.lifecycle.reactivation_gap
        )
        new_day = _record_day(state.activity_days, epoch_day(ts), epoch_day(now), cfg)
    rejected = False
    score: int | None = None
    if event.type == "track" and event.event is not None:
        rejected = _record_track(state, event.event, event.properties, ts, cfg, epoch_day(now))
        if event.event == NPS_EVENT:
            score = record_nps(state, event.properties.get("score"), ts)
        elif event.event == FEEDBACK_EVENT:
            _record_trait(state, "feedback_at", ts.isoformat(), ts)
    return Recorded(new_day, rejected, score)


def record_nps(state: UserState, raw_score: Any, ts: datetime) -> int | None:
    """Record an NPS answer's score (`shared.nps.parse_score`; an invalid one is ignored and
    None returned) as the traits `nps_score`, `nps_category` and `nps_at`, latest answer by event
    time winning (`latest_wins` on `nps_score`: a tie on time is broken by the score's value, so
    arrival order never matters). The three traits always come from the same answer."""
    score = parse_score(raw_score)
    if score is None:
        return None
    if latest_wins(score, ts, state.traits.get("nps_score"), state.trait_at.get("nps_score")):
        for name, value in zip(NPS_TRAITS, (score, category(score), ts.isoformat()), strict=True):
            state.traits[name] = value
            state.trait_at[name] = ts
    return score


def merge_nps_traits(into: UserState, other: UserState) -> None:
    """Take `other`'s NPS traits into `into` if its answer is the later one (as `record_nps`
    decides): the three traits move together, so they still describe one answer."""
    score = other.traits.get("nps_score")
    at = other.trait_at.get("nps_score")
    if at is None or not latest_wins(score, at, into.traits.get("nps_score"), into.trait_at.get("nps_score")):
        return
    for name in NPS_TRAITS:
        if name in other.traits:
            into.traits[name] = other.traits[name]
            into.trait_at[name] = other.trait_at[name]


def _record_trait(state: UserState, name: str, value: Any, ts: datetime) -> None:
    if latest_wins(value, ts, state.traits.get(name), state.trait_at.get(name)):
        state.traits[name] = value
        state.trait_at[name] = ts


def insert_activity(
    runs: list[list[datetime]],
    pruned_end: datetime | None,
    ts: datetime,
    gap: timedelta,
    max_runs: int = MAX_RUNS,
) -> datetime | None:
    """Insert an activity instant into `runs` (in place); returns the new `pruned_end`.

    Runs are maximal `[start, end]` spans whose consecutive activities are less than `gap` apart;
    neighbouring runs are ≥ `gap` apart. The partition is unique for a set of instants, so any
    insertion order gives the same runs. Runs beyond `max_runs` fold into `pruned_end`.
    """
    if pruned_end is not None and ts <= pruned_end:
        return pruned_end  # inside history already folded away; it cannot bridge to kept runs
    i = bisect_right(runs, ts, key=lambda r: r[0])
    prev = runs[i - 1] if i > 0 else None
    nxt = runs[i] if i < len(runs) else None
    if prev is not None and ts <= prev[1]:
        return pruned_end
    join_next = nxt is not None and nxt[0] - ts < gap
    if prev is None and pruned_end is not None and ts - pruned_end < gap:
        if join_next and nxt is not None:
            del runs[0]  # the first kept run now continues folded history
            return nxt[1]
        return ts
    join_prev = prev is not None and ts - prev[1] < gap
    if prev is not None and nxt is not None and join_prev and join_next:
        prev[1] = nxt[1]
        del runs[i]
    elif prev is not None and join_prev:
        prev[1] = ts
    elif nxt is not None and join_next:
        nxt[0] = ts
    else:
        runs.insert(i, [ts, ts])
    while len(runs) > max_runs:
        dropped = runs.pop(0)
        pruned_end = dropped[1] if pruned_end is None else max(pruned_end, dropped[1])
    return pruned_end


def merge_runs(
    runs: list[list[datetime]],
    pruned_end: datetime | None,
    gap: timedelta,
    max_runs: int = MAX_RUNS,
) -> tuple[list[list[datetime]], datetime | None]:
    """The runs covering the union of several run lists (e.g. two profiles'), and `pruned_end`."""
    out: list[list[datetime]] = []
    for start, end in sorted(runs):
        if pruned_end is not None and start - pruned_end < gap:
            pruned_end = max(pruned_end, end)  # continues history already folded away
        elif out and start - out[-1][1] < gap:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    while len(out) > max_runs:
        pruned_end = out.pop(0)[1]
    if pruned_end is not None:
        out = [r for r in out if r[0] > pruned_end]
    return out, pruned_end


def _record_day(days: list[int], day: int, today: int, cfg: SegmenterConfig) -> int | None:
    oldest = today - cfg.activity.keep_days + 1
    i = bisect_left(days, day)
    if i < len(days) and days[i] == day:
        return None
    if day >= oldest:
        days.insert(i, day)
        if days[0] < oldest:
            del days[: bisect_left(days, oldest)]
    return day


def _record_track(
    state: UserState,
    name: str,
    properties: dict[str, Any],
    ts: datetime,
    cfg: SegmenterConfig,
    today: int,
) -> bool:
    """Record a track event's facts; True if it was an order whose amount was rejected."""
    d = cfg.derived
    if name == cfg.signup.event and (state.signup_event_at is None or ts < state.signup_event_at):
        state.signup_event_at = ts
    keep = d.activation_keep.get(name)
    if keep is not None:
        times = state.activation_times.setdefault(name, [])
        if len(times) < keep or ts < times[-1]:
            insort(times, ts)
            del times[keep:]
    window = d.counted_days.get(name)
    if window is not None:
        _count_day(state.event_days.setdefault(name, {}), epoch_day(ts), today - window + 1)
    if name in d.not_done_events:
        last = state.last_done.get(name)
        if last is None or ts > last:
            state.last_done[name] = ts
    if name in d.revenue_events:
        raw = properties.get(cfg.revenue.property)
        amount = order_amount(raw)
        _record_order(state, 0.0 if amount is None else amount, ts, cfg, today)
        return amount is None and raw is not None
    return False


def _count_day(buckets: dict[int, int], day: int, oldest: int) -> None:
    if day < oldest:
        return
    if day in buckets:
        buckets[day] += 1
        return
    buckets[day] = 1
    for stale in [k for k in buckets if k < oldest]:
        del buckets[stale]


def _record_order(state: UserState, amount: float, ts: datetime, cfg: SegmenterConfig, today: int) -> None:
    state.orders += 1
    state.revenue = add_amount(state.revenue, amount)
    if state.last_order_at is None or ts > state.last_order_at:
        state.last_order_at = ts
    if state.first_order_at is None or ts < state.first_order_at:
        state.first_order_at = ts
    oldest = today - cfg.rfm.window.days + 1
    day = epoch_day(ts)
    if day < oldest:
        return
    bucket = state.order_days.get(day)
    if bucket is None:
        state.order_days[day] = [1.0, amount]
        for stale in [k for k in state.order_days if k < oldest]:
            del state.order_days[stale]
    else:
        bucket[0] += 1
        bucket[1] = add_amount(bucket[1], amount)


def order_amount(value: Any) -> float | None:
    """The revenue of an order: a number or numeric string that is finite and within
    ±`MAX_AMOUNT`; None for anything else (`"NaN"`, `"inf"`, `1e308`, `true`, text, absent).

    The policy for a bad amount is to apply the event without it (the order still counts, at
    0): the event is otherwise good, and dead-lettering it would lose the order and the activity
    with it. The caller counts such events (`userops_segmenter_amounts_rejected_total`).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    try:
        amount = float(number)
    except OverflowError:  # an int beyond the float range
        return None
    if not math.isfinite(amount) or abs(amount) > MAX_AMOUNT:
        return None
    return amount


def add_amount(total: float, amount: float) -> float:
    """`total + amount`, saturated at ±`MAX_TOTAL` so a sum never becomes infinite."""
    return max(-MAX_TOTAL, min(MAX_TOTAL, total + amount))


def latest_wins(new: Any, new_at: datetime, old: Any, old_at: datetime | None) -> bool:
    """Latest wins; a tie on time is broken by the value itself, so arrival order never matters."""
    if old_at is None or new_at > old_at:
        return True
    if new_at < old_at:
        return False
    return orjson.dumps(new, option=orjson.OPT_SORT_KEYS) > orjson.dumps(old, option=orjson.OPT_SORT_KEYS)


def _record_traits(state: UserState, traits: dict[str, Any], ts: datetime) -> None:
    for name, raw in traits.items():
        value = storable(raw)  # compared and kept as the store will give it back
        if latest_wins(value, ts, state.traits.get(name), state.trait_at.get(name)):
            state.traits[name] = value
            state.trait_at[name] = ts
    tz = traits.get("timezone")
    if isinstance(tz, str) and tz:
        _record_timezone(state, tz, ts)


def _record_timezone(state: UserState, tz: str, ts: datetime) -> None:
    if latest_wins(tz, ts, state.timezone, state.timezone_at):
        state.timezone = tz
        state.timezone_at = ts
