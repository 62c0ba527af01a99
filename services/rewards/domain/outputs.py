"""The domain's output events (DESIGN §5), one frozen dataclass per type.

Each has a deterministic `id` (`shared.ids.output_id(input_id, rule)`), the `user_id` it is
about (the topic key), the instant `at` it happened, the `config_version` that produced it and
the `source_id`: the input id it derives from (for a tier change found by a review, the review
timer's input id). `balance` is the user's spendable (available) balance right after the effect.
Field names follow the wire contracts of `shared/contracts/rewards.py` (in snake case), which
map these records to JSON; this module knows no wire format.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import ClassVar


@dataclass(frozen=True, slots=True, kw_only=True)
class _Output:
    id: str
    user_id: str
    at: datetime
    config_version: str
    source_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsAwarded(_Output):
    type: ClassVar[str] = "points_awarded"
    rule_id: str
    points: int
    lot_id: str
    pending: bool
    expires_at: datetime | None
    available_at: datetime | None
    """When pending points become spendable (None: already spendable)."""
    balance: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsReversed(_Output):
    type: ClassVar[str] = "points_reversed"
    rule_id: str
    reverses: str
    """The id of the award (its lot and transaction) this corrects."""
    points: int
    """Points taken back (clawed back plus recorded as debt)."""
    shortfall: int
    """Of `points`, what the user had already spent: recorded as debt, repaid by later awards."""
    reason: str
    balance: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsRedeemed(_Output):
    type: ClassVar[str] = "points_redeemed"
    redemption_id: str
    """The hold that was confirmed."""
    points: int
    balance: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsExpired(_Output):
    type: ClassVar[str] = "points_expired"
    rule_id: str
    lot_id: str
    points: int
    balance: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsExpiringSoon(_Output):
    type: ClassVar[str] = "points_expiring_soon"
    lot_id: str
    points: int
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TierChanged(_Output):
    type: ClassVar[str] = "tier_changed"
    from_tier: str
    to_tier: str
    reason: str
    """`promoted` or `demoted`."""
    period_end: datetime | None
    """When the new tier's period ends (None for the base tier, which is never reviewed)."""
    earned_in_window: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BadgeEarned(_Output):
    type: ClassVar[str] = "badge_earned"
    badge: str
    times: int
    """How many times the user has now earned it (1 for a one-time badge)."""
    points: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreakExtended(_Output):
    type: ClassVar[str] = "streak_extended"
    days: int
    """The streak's length in check-in days (1 when a streak starts)."""
    local_date: date
    freezes_used: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferralRewarded(_Output):
    type: ClassVar[str] = "referral_rewarded"
    role: str
    """`referrer` or `referee`: `user_id` is the one paid."""
    referrer_id: str
    referee_id: str
    points: int
    balance: int


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
