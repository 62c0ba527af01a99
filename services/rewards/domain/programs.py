"""The YAML models of the engagement programs: tiers, streaks, badges and referrals.

Part of `config/rewards.yaml` (see `services.rewards.config.RewardsConfig`); kept beside the
logic that reads them. Each model rejects unknown fields and checks its own consistency.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Annotated, Any, Self

from pydantic import BeforeValidator, Field, model_validator

from services.rewards.domain.amounts import PositiveDecimal
from services.segmenter.domain.duration import Duration, parse_duration
from shared.config import StrictModel

ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
"""Ids of rules, badges and tiers: lower case, digits, `_ . -` (no `:`, kept for built-ins)."""


def _non_negative(value: Any) -> timedelta:
    return parse_duration(value)


GraceDuration = Annotated[timedelta, BeforeValidator(_non_negative)]
"""A duration that may be zero ("0s")."""


class TierLevel(StrictModel):
    """A tier reached with `min_points` earned in the window; `multiplier` is its earning benefit
    (applied by rules with `tier_multiplier: true`)."""

    name: str = Field(pattern=ID_PATTERN)
    min_points: int = Field(ge=0)
    multiplier: PositiveDecimal = PositiveDecimal(1)


class TiersConfig(StrictModel):
    """Tiers from points earned in the rolling `window`: promotion at once; at each `period` end
    a user below their tier's threshold keeps it for `grace`, then drops to what they qualify for."""

    window: Duration = timedelta(days=365)
    period: Duration = timedelta(days=90)
    grace: GraceDuration = timedelta(days=30)
    levels: list[TierLevel] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.grace >= self.period:
            raise ValueError("grace must be shorter than period")
        if self.levels[0].min_points != 0:
            raise ValueError("the first tier level must have min_points 0")
        mins = [level.min_points for level in self.levels]
        if any(b <= a for a, b in itertools.pairwise(mins)):
            raise ValueError("tier min_points must be strictly ascending")
        names = [level.name for level in self.levels]
        if len(set(names)) != len(names):
            raise ValueError("tier names must be unique")
        return self


class StreakConfig(StrictModel):
    """Daily check-ins: one `event` per local date counts; up to `freezes` missed days per streak
    are bridged instead of breaking it."""

    event: str = Field(min_length=1)
    freezes: int = Field(default=0, ge=0, le=30)


class TotalConfig(StrictModel):
    property: str = Field(min_length=1)
    at_least: PositiveDecimal


class BadgeRule(StrictModel):
    """A badge for `count` `event`s, a `total` of an `event` property, or a `streak` of that many
    days; `repeatable` earns it again at every further multiple; `points` come with it."""

    id: str = Field(pattern=ID_PATTERN)
    event: str | None = Field(default=None, min_length=1)
    count: int | None = Field(default=None, ge=1)
    total: TotalConfig | None = None
    streak: int | None = Field(default=None, ge=1)
    repeatable: bool = False
    points: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        kinds = [self.count is not None, self.total is not None, self.streak is not None]
        if sum(kinds) != 1:
            raise ValueError("a badge is earned by exactly one of: count, total, streak")
        if (self.streak is None) == (self.event is None):
            raise ValueError("count and total badges name an event; streak badges do not")
        return self


class ReferralConfig(StrictModel):
    """`event` carrying `referrer_property` records who referred the user; once that user
    activates, referrer and referee are paid once. Self-referral and cycles pay nothing."""

    event: str = Field(min_length=1)
    referrer_property: str = Field(min_length=1)
    referrer_points: int = Field(ge=1)
    referee_points: int = Field(ge=1)
