"""The domain's output events (DESIGN §5), one frozen dataclass per type.

Each has a deterministic `id` (`shared.ids.output_id(input_id, rule)`), the `user_id` it is
about (the topic key), the instant `at` it happened, and the `config_version` that produced it.
The wire contracts in `shared/contracts/` map these to JSON; this module knows no wire format.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import ClassVar


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsAwarded:
    type: ClassVar[str] = "points_awarded"
    id: str
    user_id: str
    at: datetime
    config_version: str
    rule_id: str
    points: int
    lot_id: str
    pending: bool
    expires_at: datetime | None
    available_at: datetime | None
    """When pending points become spendable (None: already spendable)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsReversed:
    type: ClassVar[str] = "points_reversed"
    id: str
    user_id: str
    at: datetime
    config_version: str
    rule_id: str
    award_id: str
    points: int
    """Points taken back (clawed back plus recorded as debt)."""
    shortfall: int
    """Of `points`, what the user had already spent: recorded as debt, repaid by later awards."""
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsRedeemed:
    type: ClassVar[str] = "points_redeemed"
    id: str
    user_id: str
    at: datetime
    config_version: str
    hold_id: str
    points: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsExpired:
    type: ClassVar[str] = "points_expired"
    id: str
    user_id: str
    at: datetime
    config_version: str
    rule_id: str
    lot_id: str
    points: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsExpiringSoon:
    type: ClassVar[str] = "points_expiring_soon"
    id: str
    user_id: str
    at: datetime
    config_version: str
    lot_id: str
    points: int
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TierChanged:
    type: ClassVar[str] = "tier_changed"
    id: str
    user_id: str
    at: datetime
    config_version: str
    from_tier: str
    to_tier: str
    reason: str
    """`promoted` or `demoted`."""
    earned_in_window: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BadgeEarned:
    type: ClassVar[str] = "badge_earned"
    id: str
    user_id: str
    at: datetime
    config_version: str
    badge_id: str
    times: int
    """How many times the user has now earned it (1 for a one-time badge)."""
    points: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreakExtended:
    type: ClassVar[str] = "streak_extended"
    id: str
    user_id: str
    at: datetime
    config_version: str
    length: int
    local_date: date
    freezes_used: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferralRewarded:
    type: ClassVar[str] = "referral_rewarded"
    id: str
    user_id: str
    """Who is paid (the referrer or the referee)."""
    at: datetime
    config_version: str
    role: str
    """`referrer` or `referee`."""
    referrer_id: str
    referee_id: str
    points: int


Output = (
    PointsAwarded
    | PointsReversed
    | PointsRedeemed
    | PointsExpired
    | PointsExpiringSoon
    | TierChanged
    | BadgeEarned
    | StreakExtended
    | ReferralRewarded
)
