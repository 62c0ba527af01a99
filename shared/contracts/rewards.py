"""`userops.rewards.v1`: the incentive system's facts (DESIGN.md §5).

Produced by rewards (key = `userId`), consumed by the notifier. Every amount is a whole, positive
number of points; `balance` is the user's spendable balance after the entry (never negative).
`ruleId` names the earning rule (or redemption/expiry rule) that produced the record; `sourceId`
is the input id the effect derives from (`shared.ids`), so a consumer can relate it to its cause.

- `points_awarded`: `points`, `ruleId`, `lotId`, `expiresAt` (null: never), `balance`;
- `points_redeemed`: `points`, `redemptionId`, `balance`;
- `points_expired`: `points`, `lotId`, `balance`;
- `points_reversed`: `points`, `reverses` (id of the entry it corrects), `reason`, `balance`;
- `points_expiring_soon`: `points` (in lots expiring by `expiresAt`), `expiresAt`;
- `tier_changed`: `from` (null for a first tier), `to`, `reason`, `periodEnd` (null: no period);
- `badge_earned`: `badge`;
- `streak_extended`: `days` (the streak's length, ≥ 1), `localDate` (the user's own date);
- `referral_rewarded`: `role` (`referrer`/`referee`), `referrerId`, `refereeId`, `points`, `balance`.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Final, Literal

from pydantic import Field, TypeAdapter, model_validator

from shared import topics
from shared.contracts.base import ContractModel, Count, Instant, NonEmpty, Points, parse


class _Rewarded(ContractModel):
    rule_id: NonEmpty | None = None
    source_id: NonEmpty | None = None


class PointsAwarded(_Rewarded):
    """Points credited as a new lot, spendable until `expires_at`."""

    type: Literal["points_awarded"] = "points_awarded"
    points: Points
    lot_id: NonEmpty
    expires_at: Instant | None = None
    balance: Count


class PointsRedeemed(_Rewarded):
    """Points spent by a confirmed redemption (earliest-expiring lots first)."""

    type: Literal["points_redeemed"] = "points_redeemed"
    points: Points
    redemption_id: NonEmpty
    balance: Count


class PointsExpired(_Rewarded):
    """The unspent rest of a lot expired."""

    type: Literal["points_expired"] = "points_expired"
    points: Points
    lot_id: NonEmpty
    balance: Count


class PointsReversed(_Rewarded):
    """A correction: the linked entry `reverses` is undone by `points`."""

    type: Literal["points_reversed"] = "points_reversed"
    points: Points
    reverses: NonEmpty
    reason: str
    balance: Count


class PointsExpiringSoon(_Rewarded):
    """A reminder: `points` of the user's lots expire by `expires_at`."""

    type: Literal["points_expiring_soon"] = "points_expiring_soon"
    points: Points
    expires_at: Instant


class TierChanged(_Rewarded):
    """The user's tier changed (promotions at once, demotions at a period's end)."""

    type: Literal["tier_changed"] = "tier_changed"
    from_tier: NonEmpty | None = Field(alias="from")
    to_tier: NonEmpty = Field(alias="to")
    reason: str
    period_end: Instant | None = None


class BadgeEarned(_Rewarded):
    type: Literal["badge_earned"] = "badge_earned"
    badge: NonEmpty


class StreakExtended(_Rewarded):
    """A daily check-in streak grew to `days`, on the user's own local date."""

    type: Literal["streak_extended"] = "streak_extended"
    days: Annotated[int, Field(strict=True, ge=1)]
    local_date: date


class ReferralRewarded(_Rewarded):
    """One side of a referral was paid (after the referee activated; once per referee)."""

    type: Literal["referral_rewarded"] = "referral_rewarded"
    role: Literal["referrer", "referee"]
    referrer_id: NonEmpty
    referee_id: NonEmpty
    points: Points
    balance: Count

    @model_validator(mode="after")
    def _not_self(self) -> ReferralRewarded:
        if self.referrer_id == self.referee_id:
            raise ValueError("a referral never rewards self-referral")
        if self.user_id != (self.referrer_id if self.role == "referrer" else self.referee_id):
            raise ValueError(f"userId must be the {self.role}'s id")
        return self


RewardsEvent = Annotated[
    PointsAwarded
    | PointsRedeemed
    | PointsExpired
    | PointsReversed
    | PointsExpiringSoon
    | TierChanged
    | BadgeEarned
    | StreakExtended
    | ReferralRewarded,
    Field(discriminator="type"),
]
_ADAPTER: Final[TypeAdapter[RewardsEvent]] = TypeAdapter(RewardsEvent)


def parse_rewards(data: bytes | str | dict[str, Any]) -> RewardsEvent:
    """One `userops.rewards.v1` record, or `ContractError` naming what is wrong."""
    return parse(_ADAPTER, topics.REWARDS, data)
