"""Alias merge: an anonymous profile's history joins the identified user's, counted once."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.facts import NPS_TRAITS, add_amount, latest_wins, merge_nps_traits, merge_runs
from services.segmenter.domain.lifecycle import refresh_derived
from services.segmenter.domain.state import UserState

T = TypeVar("T", bound=datetime)


def merge_alias(
    anonymous: UserState, user: UserState | None, cfg: SegmenterConfig, user_id: str
) -> UserState:
    """Fold `anonymous` into `user` (or into a new profile `user_id` if there is none).

    Facts combine as if every event had been recorded on one profile: minima/maxima, unions of
    days and runs, sums of counters and revenue. Merging an id already merged changes nothing,
    so a redelivered alias cannot double count. The target's last decisions (stage, segments,
    RFM scores) are kept, so the next `apply_event`/`apply_timer` announces only real changes;
    with no target, the anonymous profile's decisions carry over. `user` is updated in place;
    `anonymous` is left as it was (the caller retires it).
    """
    if user is None:
        merged = anonymous.copy()
        merged.user_id = user_id
        merged.aliases = sorted({*anonymous.aliases, anonymous.user_id} - {user_id})
        return merged
    if user.user_id != user_id:
        raise ValueError(f"merge target {user.user_id!r} is not {user_id!r}")
    if anonymous.user_id == user.user_id or anonymous.user_id in user.aliases:
        return user
    a, u = anonymous, user
    u.aliases = sorted({*u.aliases, *a.aliases, a.user_id} - {u.user_id})
    u.first_seen = min(u.first_seen, a.first_seen)
    u.last_seen = max(u.last_seen, a.last_seen)
    u.signup_event_at = _min(u.signup_event_at, a.signup_event_at)
    u.last_activity_at = _max(u.last_activity_at, a.last_activity_at)
    u.pruned_run_end = _max(u.pruned_run_end, a.pruned_run_end)
    u.runs, u.pruned_run_end = merge_runs(
        [*u.runs, *a.runs], u.pruned_run_end, cfg.lifecycle.reactivation_gap
    )
    for name, times in a.activation_times.items():
        keep = max(cfg.derived.activation_keep.get(name, 0), len(times), 1)
        u.activation_times[name] = sorted([*u.activation_times.get(name, []), *times])[:keep]
    for name, value in a.traits.items():
        if name in NPS_TRAITS:
            continue
        at = a.trait_at[name]
        if latest_wins(value, at, u.traits.get(name), u.trait_at.get(name)):
            u.traits[name] = value
            u.trait_at[name] = at
    merge_nps_traits(u, a)
    if a.timezone_at is not None and latest_wins(a.timezone, a.timezone_at, u.timezone, u.timezone_at):
        u.timezone, u.timezone_at = a.timezone, a.timezone_at
    u.activity_days = sorted({*u.activity_days, *a.activity_days})
    for name, days in a.event_days.items():
        target = u.event_days.setdefault(name, {})
        for day, n in days.items():
            target[day] = target.get(day, 0) + n
    for name, at in a.last_done.items():
        u.last_done[name] = _max(u.last_done.get(name), at) or at
    u.revenue = add_amount(u.revenue, a.revenue)
    u.orders += a.orders
    u.first_order_at = _min(u.first_order_at, a.first_order_at)
    u.last_order_at = _max(u.last_order_at, a.last_order_at)
    for day, (count, amount) in a.order_days.items():
        bucket = u.order_days.setdefault(day, [0.0, 0.0])
        bucket[0] += count
        bucket[1] = add_amount(bucket[1], amount)
    u.as_of = _max(u.as_of, a.as_of)
    refresh_derived(u, cfg)
    return u


def _min(a: T | None, b: T | None) -> T | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _max(a: T | None, b: T | None) -> T | None:
    if a is None:
        return b
    return a if b is None else max(a, b)
