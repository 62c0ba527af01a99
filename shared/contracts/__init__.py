"""Typed, versioned contracts of every userops output topic (DESIGN.md §3.2).

Producers build these models and write `model.to_json()` (or `to_wire()` into the outbox);
consumers read a record with the topic's `parse_*` function, which returns the model or raises
`ContractError`. No `dict[str, Any]` crosses a topic boundary. See `base` for the common fields
and the versioning rule.
"""

from shared.contracts.base import SCHEMA_VERSION, ContractError, ContractModel
from shared.contracts.deliveries import DeliveryOutcome, parse_delivery
from shared.contracts.lifecycle import (
    STAGES,
    LifecycleEvent,
    SegmentEntered,
    SegmentExited,
    StageChanged,
    parse_lifecycle,
)
from shared.contracts.rewards import (
    BadgeEarned,
    PointsAwarded,
    PointsExpired,
    PointsExpiringSoon,
    PointsRedeemed,
    PointsReversed,
    ReferralRewarded,
    RewardsEvent,
    StreakExtended,
    TierChanged,
    parse_rewards,
)

__all__ = [
    "SCHEMA_VERSION",
    "STAGES",
    "BadgeEarned",
    "ContractError",
    "ContractModel",
    "DeliveryOutcome",
    "LifecycleEvent",
    "PointsAwarded",
    "PointsExpired",
    "PointsExpiringSoon",
    "PointsRedeemed",
    "PointsReversed",
    "ReferralRewarded",
    "RewardsEvent",
    "SegmentEntered",
    "SegmentExited",
    "StageChanged",
    "StreakExtended",
    "TierChanged",
    "parse_delivery",
    "parse_lifecycle",
    "parse_rewards",
]
