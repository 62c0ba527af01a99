"""Earning rules applied to one input: which rules match, how many points, caps and budgets.

Points: fixed `points`, or `proportional` (property x points_per_unit), times every multiplier
whose conditions hold and, with `tier_multiplier`, the user's tier benefit, rounded once by the
rule's `rounding` — all in exact Decimal arithmetic. Then caps, then the budget:
- caps truncate an award to the room left in every capped period (local day, local ISO week,
  lifetime); a period with no room skips the award (`capped`);
- a budget with `overflow: stop` skips an award that does not fit whole; `partial` awards what
  is left; nothing is awarded once the budget is spent (`budget_exhausted`).
Cap usage older than the retained horizon is forgotten, so an event too late to be checked
against its period's usage is skipped (`too_late_for_cap`) rather than risk exceeding the cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

from services.rewards.config import EarningRule, RewardsConfig
from services.rewards.domain.amounts import round_points, to_decimal
from services.rewards.domain.conditions import Facts, all_hold
from services.rewards.domain.state import UserRewardsState

DAY_KEYS_KEPT: Final = timedelta(days=8)
WEEK_KEYS_KEPT: Final = timedelta(days=21)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A matching rule that awarded nothing or less than asked: `reason`, and the points it
    would have awarded before caps and budget."""

    rule_id: str
    reason: str
    points: int = 0


def user_zone(state: UserRewardsState, cfg: RewardsConfig) -> ZoneInfo:
    """The user's timezone (last valid one seen), else the configured default."""
    if state.timezone:
        try:
            return ZoneInfo(state.timezone)
        except (ValueError, KeyError, OSError):
            pass
    return ZoneInfo(cfg.default_timezone)


def valid_zone(name: object) -> str | None:
    """`name` if it is a known IANA timezone, else None."""
    if not isinstance(name, str) or not name or len(name) > 64:
        return None
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return None
    return name


def period_key(period: str, at: datetime, zone: ZoneInfo) -> str:
    """The cap period containing `at`: `d:<local date>`, `w:<ISO year>-W<week>`, or `life`."""
    if period == "lifetime":
        return "life"
    local = at.astimezone(zone).date()
    if period == "day":
        return f"d:{local.isoformat()}"
    year, week, _ = local.isocalendar()
    return f"w:{year:04d}-W{week:02d}"


def _horizon(now: datetime, zone: ZoneInfo) -> tuple[str, str]:
    today = now.astimezone(zone).date()
    oldest_day = today - DAY_KEYS_KEPT
    year, week, _ = (today - WEEK_KEYS_KEPT).isocalendar()
    return f"d:{oldest_day.isoformat()}", f"w:{year:04d}-W{week:02d}"


def cap_room(
    state: UserRewardsState, rule: EarningRule, at: datetime, now: datetime, zone: ZoneInfo
) -> int | None:
    """Points the rule may still award to the user for an award at `at` (None: uncapped;
    0 also when `at`'s period is older than the retained horizon)."""
    if not rule.caps:
        return None
    oldest_day, oldest_week = _horizon(now, zone)
    usage = state.cap_usage.get(rule.id, {})
    room: int | None = None
    for cap in rule.caps:
        key = period_key(cap.period, at, zone)
        if (key.startswith("d:") and key < oldest_day) or (key.startswith("w:") and key < oldest_week):
            return 0
        left = cap.limit - usage.get(key, 0)
        room = left if room is None else min(room, left)
    return max(0, room or 0)


def record_caps(
    state: UserRewardsState, rule: EarningRule, at: datetime, zone: ZoneInfo, points: int
) -> None:
    usage = state.cap_usage.setdefault(rule.id, {})
    for cap in rule.caps:
        key = period_key(cap.period, at, zone)
        usage[key] = usage.get(key, 0) + points


def prune_caps(state: UserRewardsState, now: datetime, zone: ZoneInfo) -> None:
    """Forget usage of periods older than the retained horizon."""
    oldest_day, oldest_week = _horizon(now, zone)
    for rule_id, usage in list(state.cap_usage.items()):
        kept = {
            k: n
            for k, n in usage.items()
            if not ((k.startswith("d:") and k < oldest_day) or (k.startswith("w:") and k < oldest_week))
        }
        if kept:
            state.cap_usage[rule_id] = kept
        else:
            del state.cap_usage[rule_id]


def rule_points(rule: EarningRule, facts: Facts, tier_multiplier: Decimal) -> int | str:
    """The points `rule` gives for `facts` before caps and budget, or the reason it gives none."""
    if rule.points is not None:
        base = Decimal(rule.points)
    else:
        assert rule.proportional is not None
        prop = rule.proportional
        amount = to_decimal(facts.properties.get(prop.property))
        if amount is None:
            return "bad_amount"
        if amount <= 0 or amount < prop.min_amount:
            return "below_minimum"
        base = amount * prop.points_per_unit
    factor = Decimal(1)
    for multiplier in rule.multipliers:
        if all_hold(multiplier.when, facts):
            factor *= multiplier.factor
    if rule.tier_multiplier:
        factor *= tier_multiplier
    points = round_points(base * factor, rule.rounding)
    return points if points > 0 else "zero_points"


def budget_grant(rule: EarningRule, points: int, remaining: int) -> int:
    """How much of `points` the rule's budget lets through (`remaining` is what is left)."""
    if rule.budget is None:
        return points
    if rule.budget.overflow == "stop":
        return points if points <= remaining else 0
    return max(0, min(points, remaining))


def matching(cfg: RewardsConfig, *, event: str | None = None, stage: str | None = None) -> list[EarningRule]:
    """Rules triggered by tracked `event`, or by reaching lifecycle `stage`, in config order."""
    if event is not None:
        return [r for r in cfg.rules if r.event == event]
    return [r for r in cfg.rules if stage is not None and r.lifecycle == stage]
