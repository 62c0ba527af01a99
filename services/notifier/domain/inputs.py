"""What the notifier consumes, as typed inputs: raw events, lifecycle events, rewards events,
its own timers and preference changes. Each input carries its scoped input id
(`shared.ids.input_id` / `timer_input_id`), from which every send key is derived.

Lifecycle and rewards records are read with their topic contracts (`shared.contracts`) and
turned into these inputs by `lifecycle_input` / `rewards_input`; `lifecycle_from_wire` and
`rewards_from_wire` do both, raising `ContractError` (a `ValueError`, dead-lettered by the
consumer) for a record that breaks its contract.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from shared import topics
from shared.contracts import lifecycle as lc
from shared.contracts import rewards as rw
from shared.events import Event
from shared.ids import input_id, timer_input_id

REWARDS_EVENTS: Final = frozenset(
    {
        "points_awarded",
        "points_redeemed",
        "points_expired",
        "points_reversed",
        "points_expiring_soon",
        "tier_changed",
        "badge_earned",
        "streak_extended",
        "referral_rewarded",
    }
)
EXPIRY_TIMER: Final = "notifier.points_expiring"


@dataclass(frozen=True, slots=True)
class EventInput:
    """A raw event from `userops.events.v1`."""

    input_id: str
    event: Event

    @property
    def user_id(self) -> str:
        return self.event.key

    @property
    def at(self) -> datetime:
        return self.event.timestamp

    @classmethod
    def of(cls, event: Event) -> EventInput:
        return cls(input_id(topics.EVENTS, event.key, event.message_id), event)


@dataclass(frozen=True, slots=True)
class StageChanged:
    input_id: str
    user_id: str
    from_stage: str | None
    to_stage: str
    at: datetime
    activated: bool | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SegmentChanged:
    input_id: str
    user_id: str
    segment: str
    entered: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class RewardsEvent:
    """One rewards event; fields the event type does not carry are None. `lot_id` names the lot
    a `points_awarded` created or a `points_expired` ended."""

    input_id: str
    user_id: str
    type: str
    at: datetime
    points: int | None = None
    balance: int | None = None
    expires_at: datetime | None = None
    tier: str | None = None
    from_tier: str | None = None
    direction: str | None = None
    """`up` or `down` for a `tier_changed` whose reason says so (`promoted`/`demoted`)."""
    badge: str | None = None
    lot_id: str | None = None


@dataclass(frozen=True, slots=True)
class ExpiryCheck:
    """The notifier's own timer: look for points expiring soon (due at `at`)."""

    input_id: str
    user_id: str
    at: datetime

    @classmethod
    def due(cls, user_id: str, at: datetime) -> ExpiryCheck:
        return cls(timer_input_id(EXPIRY_TIMER, user_id, at), user_id, at)


@dataclass(frozen=True, slots=True)
class PreferenceChanged:
    """A subscription change (one-click unsubscribe, preference centre): `scope` is `all`,
    `channel:<name>` or `topic:<name>`."""

    input_id: str
    user_id: str
    scope: str
    subscribed: bool
    at: datetime


Input = EventInput | StageChanged | SegmentChanged | RewardsEvent | ExpiryCheck | PreferenceChanged


def lifecycle_input(record: lc.LifecycleEvent) -> StageChanged | SegmentChanged:
    """The input of one parsed `userops.lifecycle.v1` record."""
    iid = input_id(topics.LIFECYCLE, record.user_id, record.id)
    if isinstance(record, lc.StageChanged):
        return StageChanged(
            iid,
            record.user_id,
            record.from_stage,
            record.to_stage,
            record.at,
            record.activated,
            record.reason,
        )
    return SegmentChanged(
        iid, record.user_id, record.segment, isinstance(record, lc.SegmentEntered), record.at
    )


# The rewards service says which way a tier moved; the notifier's own `tiers` order is only the
# fallback for events that do not (a reason it does not know).
_TIER_DIRECTIONS: Final = {"promoted": "up", "demoted": "down"}


def rewards_input(record: rw.RewardsEvent) -> RewardsEvent:
    """The input of one parsed `userops.rewards.v1` record."""
    base = RewardsEvent(
        input_id(topics.REWARDS, record.user_id, record.id), record.user_id, record.type, record.at
    )
    if isinstance(record, rw.PointsAwarded):
        return replace(
            base,
            points=record.points,
            balance=record.balance,
            expires_at=record.expires_at,
            lot_id=record.lot_id,
        )
    if isinstance(record, rw.PointsExpired):
        return replace(base, points=record.points, balance=record.balance, lot_id=record.lot_id)
    if isinstance(record, (rw.PointsRedeemed, rw.PointsReversed, rw.ReferralRewarded)):
        return replace(base, points=record.points, balance=record.balance)
    if isinstance(record, rw.PointsExpiringSoon):
        return replace(base, points=record.points, expires_at=record.expires_at)
    if isinstance(record, rw.TierChanged):
        direction = _TIER_DIRECTIONS.get(record.reason)
        return replace(base, tier=record.to_tier, from_tier=record.from_tier, direction=direction)
    if isinstance(record, rw.BadgeEarned):
        return replace(base, badge=record.badge)
    return base


def lifecycle_from_wire(data: bytes | str | dict[str, Any]) -> StageChanged | SegmentChanged:
    """Parse one `userops.lifecycle.v1` record into an input (`ContractError` if it is bad)."""
    return lifecycle_input(lc.parse_lifecycle(data))


def rewards_from_wire(data: bytes | str | dict[str, Any]) -> RewardsEvent:
    """Parse one `userops.rewards.v1` record into an input (`ContractError` if it is bad)."""
    return rewards_input(rw.parse_rewards(data))
