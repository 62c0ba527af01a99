"""What the notifier consumes, as typed inputs: raw events, lifecycle events, rewards events,
its own timers and preference changes. Each input carries its scoped input id
(`shared.ids.input_id` / `timer_input_id`), from which every send key is derived.

The lifecycle wire format is the segmenter's (`stage_changed`: `from`, `to`, `reason`,
`activated`, `at`; `segment_entered`/`segment_exited`: `segment`, `at`; all with `id` and
`userId`). The rewards wire format (DESIGN.md §5) is read by the fields this service needs:
`points` (int), `balance` (int), `expiresAt`, `tier`/`to` and `from` (tier_changed), `badge`.
A wire object that breaks these contracts raises `InvalidEvent`, which a consumer dead-letters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from shared import topics
from shared.events import Event, InvalidEvent, check_id, parse_ts
from shared.ids import input_id, timer_input_id

REWARDS_EVENTS: Final = frozenset(
    {
        "points_awarded",
        "points_redeemed",
        "points_expired",
        "points_reversed",
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
    """One rewards event; fields the event type does not carry are None."""

    input_id: str
    user_id: str
    type: str
    at: datetime
    points: int | None = None
    balance: int | None = None
    expires_at: datetime | None = None
    tier: str | None = None
    from_tier: str | None = None
    badge: str | None = None


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


def lifecycle_from_wire(data: dict[str, Any]) -> StageChanged | SegmentChanged:
    """Parse one `userops.lifecycle.v1` object."""
    user, event_id, at = _envelope(data)
    iid = input_id(topics.LIFECYCLE, user, event_id)
    kind = data.get("type")
    if kind == "stage_changed":
        to = _text(data, "to", required=True)
        activated = data.get("activated")
        return StageChanged(
            iid,
            user,
            _text(data, "from"),
            to or "",
            at,
            activated if isinstance(activated, bool) else None,
            _text(data, "reason") or "",
        )
    if kind in ("segment_entered", "segment_exited"):
        segment = _text(data, "segment", required=True) or ""
        return SegmentChanged(iid, user, segment, kind == "segment_entered", at)
    raise InvalidEvent("type", "must be stage_changed, segment_entered or segment_exited")


def rewards_from_wire(data: dict[str, Any]) -> RewardsEvent:
    """Parse one `userops.rewards.v1` object."""
    user, event_id, at = _envelope(data)
    kind = data.get("type")
    if kind not in REWARDS_EVENTS:
        raise InvalidEvent("type", f"must be one of {sorted(REWARDS_EVENTS)}")
    expires = data.get("expiresAt")
    return RewardsEvent(
        input_id(topics.REWARDS, user, event_id),
        user,
        kind,
        at,
        points=_int(data, "points"),
        balance=_int(data, "balance"),
        expires_at=parse_ts(expires, "expiresAt") if expires is not None else None,
        tier=_text(data, "tier") or (_text(data, "to") if kind == "tier_changed" else None),
        from_tier=_text(data, "from") if kind == "tier_changed" else None,
        badge=_text(data, "badge"),
    )


def _envelope(data: dict[str, Any]) -> tuple[str, str, datetime]:
    if not isinstance(data, dict):
        raise InvalidEvent("(event)", "must be a JSON object")
    user = check_id("userId", data.get("userId"))
    if user is None:
        raise InvalidEvent("userId", "is required")
    event_id = data.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise InvalidEvent("id", "is required")
    return user, event_id, parse_ts(data.get("at"), "at")


def _text(data: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 200:
        raise InvalidEvent(name, "must be a non-empty string of at most 200 characters")
    return value


def _int(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent(name, "must be an integer")
    return value
