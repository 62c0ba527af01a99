"""`UserRewardsState`: everything the rewards service keeps about one user.

The points book (balances, lots, holds), the user's projection of lifecycle facts (stage,
activation, segments, timezone, traits), tier status with the earned history it is computed
from, cap usage per rule and local period, streak, badge progress and the referral record.
Every collection is bounded: earned history by the tier window, cap usage by the periods that
can still receive awards, lots by their expiry.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from services.rewards.domain.book import PointsBook


@dataclass(slots=True)
class EarnedPoints:
    """Points earned by one award at `at` (net of its reversals), for tier qualification."""

    at: datetime
    points: int
    award_id: str


@dataclass(slots=True)
class TierStatus:
    """The tier level (an index into the configured levels) and when its current period ends
    (None for the base level, which is never reviewed)."""

    level: int = 0
    period_end: datetime | None = None


@dataclass(slots=True)
class StreakState:
    """The current streak: its last local check-in date, its length in check-in days, and the
    freezes (bridged missed days) it has used."""

    last_date: date | None = None
    length: int = 0
    freezes_used: int = 0
    longest: int = 0


@dataclass(slots=True)
class ReferralState:
    """Who referred this user (at most one, first accepted claim wins), when, and whether the
    referral was paid. `refused` says why a claim was not accepted (self, cycle)."""

    referrer: str | None = None
    claimed_at: datetime | None = None
    paid: bool = False
    refused: str | None = None


@dataclass(slots=True)
class UserRewardsState:
    """One user's rewards state. Mutable: `decide` updates it in place."""

    user_id: str
    book: PointsBook
    timezone: str | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    stage: str | None = None
    activated_at: datetime | None = None
    segments: set[str] = field(default_factory=set)
    tier: TierStatus = field(default_factory=TierStatus)
    earned: list[EarnedPoints] = field(default_factory=list)
    cap_usage: dict[str, dict[str, int]] = field(default_factory=dict)
    """Rule id → period key (`d:2024-03-01`, `w:2024-W09`, `life`) → points awarded."""
    streak: StreakState = field(default_factory=StreakState)
    badge_progress: dict[str, Decimal] = field(default_factory=dict)
    badges: dict[str, int] = field(default_factory=dict)
    """Badge id → times earned."""
    referral: ReferralState = field(default_factory=ReferralState)
    as_of: datetime | None = None
    """The latest instant the state was brought up to (timers due by then were applied)."""

    @classmethod
    def new(cls, user_id: str) -> UserRewardsState:
        return cls(user_id=user_id, book=PointsBook(user_id))

    def copy(self) -> UserRewardsState:
        """An independent deep copy."""
        return copy.deepcopy(self)
