"""The operational lifecycle stage (DESIGN.md §4) as a pure function of a user's facts and `now`.

First match wins, with `idle = now - last activity` (or `now - first seen` for a user with no
activity yet):

1. `churned`      idle ≥ churned_after (90 d)
2. `dormant`      idle ≥ dormant_after (30 d)
3. `at_risk`      idle ≥ at_risk_after (7 d)
4. `reactivated`  the current activity run began after an idle gap ≥ reactivation_gap (30 d)
                  and less than reactivated_hold (7 d) ago
5. `new`          not activated, signed up less than new_window (7 d) ago
6. `activated`    activated less than activated_window (7 d) ago
7. `active`       otherwise (idle < at_risk_after)

The idle gap before a run is measured from the previous activity, or from the first time the
user was seen if the run holds their first activity: a user seen once and first active 40 days
later passed through `dormant`, so coming back is a reactivation. Every rule compares `now` with
an instant fixed by the facts, so the stage changes by time alone only at those instants, which
is what makes `next_deadline` exact.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.conditions import STAGES
from services.segmenter.domain.duration import format_duration
from services.segmenter.domain.state import UserState

__all__ = [
    "STAGES",
    "activation_time",
    "compute_stage",
    "current_run",
    "next_deadline",
    "refresh_derived",
    "signup_time",
    "stage_at",
]


def signup_time(state: UserState, cfg: SegmenterConfig) -> datetime:
    """The signup event if configured and seen, else the signup trait, else first seen."""
    if cfg.signup.event is not None and state.signup_event_at is not None:
        return state.signup_event_at
    if cfg.signup.trait is not None:
        parsed = _trait_time(state.traits.get(cfg.signup.trait))
        if parsed is not None:
            return parsed
    return state.first_seen


def activation_time(state: UserState, cfg: SegmenterConfig, signup: datetime) -> datetime | None:
    """The earliest instant an activation rule held: its `count`-th matching event, which for a
    rule with `within` must come less than `within` after signup. None if no rule holds."""
    best: datetime | None = None
    for rule in cfg.activation.any_of:
        times = state.activation_times.get(rule.event)
        if times is None or len(times) < rule.count:
            continue
        at = times[rule.count - 1]
        if rule.within is not None and at >= signup + rule.within:
            continue
        if best is None or at < best:
            best = at
    return best


def refresh_derived(state: UserState, cfg: SegmenterConfig) -> None:
    """Recompute `signup_at` and `activated_at` from the facts (after facts changed)."""
    state.signup_at = signup_time(state, cfg)
    state.activated_at = activation_time(state, cfg, state.signup_at)


def current_run(state: UserState) -> tuple[datetime, timedelta] | None:
    """(start of the current activity run, idle gap before it), or None if the run has no
    known predecessor (the user's first activity came with their first sighting)."""
    runs = state.runs
    if not runs:
        return None
    start = runs[-1][0]
    if len(runs) >= 2:
        return start, start - runs[-2][1]
    if state.pruned_run_end is not None:
        return start, start - state.pruned_run_end
    if state.first_seen < start:
        return start, start - state.first_seen
    return None


def _idle_since(state: UserState) -> datetime:
    return state.last_activity_at if state.last_activity_at is not None else state.first_seen


def _stage(state: UserState, cfg: SegmenterConfig, now: datetime) -> tuple[str, int]:
    """The stage and the number of the rule that chose it (1-7, as in the module docstring)."""
    lc = cfg.lifecycle
    idle = now - _idle_since(state)
    if idle >= lc.churned_after:
        return "churned", 1
    if idle >= lc.dormant_after:
        return "dormant", 2
    if idle >= lc.at_risk_after:
        return "at_risk", 3
    run = current_run(state)
    if run is not None and run[1] >= lc.reactivation_gap and now - run[0] < lc.reactivated_hold:
        return "reactivated", 4
    signup = state.signup_at if state.signup_at is not None else state.first_seen
    if state.activated_at is None:
        if now - signup < lc.new_window:
            return "new", 5
    elif now - state.activated_at < lc.activated_window:
        return "activated", 6
    return "active", 7


def stage_at(state: UserState, cfg: SegmenterConfig, now: datetime) -> str:
    """The stage at `now` (no reason); `refresh_derived` must have run since facts changed."""
    return _stage(state, cfg, now)[0]


def compute_stage(state: UserState, cfg: SegmenterConfig, now: datetime) -> tuple[str, str]:
    """(stage, reason) at `now`. The reason depends only on facts and config, never on `now`,
    so live processing and replay write the same words."""
    stage, rule = _stage(state, cfg, now)
    lc = cfg.lifecycle
    if rule == 1:
        return stage, f"idle >= {format_duration(lc.churned_after)}"
    if rule == 2:
        return stage, f"idle >= {format_duration(lc.dormant_after)}"
    if rule == 3:
        return stage, f"idle >= {format_duration(lc.at_risk_after)}"
    if rule == 4:
        run = current_run(state)
        gap = run[1] if run is not None else lc.reactivation_gap
        return stage, f"active again after {format_duration(_whole_seconds(gap))} idle"
    if rule == 5:
        return stage, f"not activated, signed up < {format_duration(lc.new_window)} ago"
    if rule == 6:
        return stage, f"activated < {format_duration(lc.activated_window)} ago"
    return stage, f"idle < {format_duration(lc.at_risk_after)}"


def next_deadline(
    state: UserState, cfg: SegmenterConfig, now: datetime, current: str | None = None
) -> datetime | None:
    """The first instant after `now` at which the stage changes if no new facts arrive, or None.

    Exact: the stage just before the returned instant is the stage at `now`, and at it differs.
    `current`, if given, must be the stage at `now` (it saves computing it again).
    """
    lc = cfg.lifecycle
    if current is None:
        current = _stage(state, cfg, now)[0]
    idle_since = _idle_since(state)
    candidates = [
        idle_since + lc.at_risk_after,
        idle_since + lc.dormant_after,
        idle_since + lc.churned_after,
    ]
    run = current_run(state)
    if run is not None and run[1] >= lc.reactivation_gap:
        candidates.append(run[0] + lc.reactivated_hold)
    signup = state.signup_at if state.signup_at is not None else state.first_seen
    candidates.append(signup + lc.new_window)
    if state.activated_at is not None:
        candidates.append(state.activated_at + lc.activated_window)
    for at in sorted(c for c in candidates if c > now):
        if _stage(state, cfg, at)[0] != current:
            return at
    return None


def _whole_seconds(value: timedelta) -> timedelta:
    return timedelta(seconds=int(value.total_seconds()))


def _trait_time(value: Any) -> datetime | None:
    """A timestamp held in a trait: ISO-8601 text or epoch seconds; None if it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value:
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        try:
            ts = datetime.fromisoformat(text)
        except ValueError:
            return None
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return None
