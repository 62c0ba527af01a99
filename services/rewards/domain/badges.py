"""Badges from counts, totals and streaks.

- `count` badges: the user tracked `event` that many times; `total` badges: the sum of an
  event property (a finite number > 0; anything else adds nothing) reached `at_least`.
  A repeatable one is earned again at every further multiple; a one-time one once.
- `streak` badges: a check-in streak reached that many days; a repeatable one is earned again at
  every further multiple within a streak (and in later streaks), a one-time one once ever.
Each call returns the badges newly earned, with the count of times after earning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from services.rewards.config import BadgeRule, RewardsConfig
from services.rewards.domain.amounts import to_decimal
from services.rewards.domain.state import UserRewardsState

MAX_PER_INPUT: Final = 100
"""Times one badge can be earned by a single input (a huge total cannot flood the outbox)."""


@dataclass(frozen=True, slots=True)
class BadgeAward:
    badge: BadgeRule
    times: int


def on_event(
    state: UserRewardsState, event: str, properties: Mapping[str, Any], cfg: RewardsConfig
) -> list[BadgeAward]:
    """Advance count and total badges for one tracked event; mutates `state`."""
    out: list[BadgeAward] = []
    for badge in cfg.badges:
        if badge.event != event:
            continue
        if badge.count is not None:
            step, threshold = Decimal(1), Decimal(badge.count)
        elif badge.total is not None:
            amount = to_decimal(properties.get(badge.total.property))
            if amount is None or amount <= 0:
                continue
            step, threshold = amount, badge.total.at_least
        else:
            continue
        progress = state.badge_progress.get(badge.id, Decimal(0)) + step
        state.badge_progress[badge.id] = progress
        level = int(progress // threshold)
        out += _earn(state, badge, level if badge.repeatable else min(level, 1))
    return out


def on_streak(state: UserRewardsState, length: int, cfg: RewardsConfig) -> list[BadgeAward]:
    """Award streak badges for a streak that just reached `length`; mutates `state`."""
    out: list[BadgeAward] = []
    for badge in cfg.badges:
        if badge.streak is None or length % badge.streak != 0:
            continue
        times = state.badges.get(badge.id, 0)
        if badge.repeatable or times == 0:
            out += _earn(state, badge, times + 1)
    return out


def _earn(state: UserRewardsState, badge: BadgeRule, target: int) -> list[BadgeAward]:
    times = state.badges.get(badge.id, 0)
    target = min(target, times + MAX_PER_INPUT)
    out = [BadgeAward(badge, n) for n in range(times + 1, target + 1)]
    if out:
        state.badges[badge.id] = target
    return out
