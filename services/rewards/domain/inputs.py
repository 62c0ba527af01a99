"""What `decide` takes: a raw event, a lifecycle event, a due timer, or a redemption command.

Every input carries its `input_id` (made by `shared.ids`), from which every output id is
derived with `shared.ids.output_id(input_id, rule)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from shared.contracts.lifecycle import LifecycleEvent, StageChanged, parse_lifecycle
from shared.events import Event
from shared.ids import timer_input_id


@dataclass(frozen=True, slots=True)
class EventInput:
    """A raw event from `userops.events.v1`. `referrer_chain` is, when the event claims a
    referrer (see `referrals.claimed_referrer`), that referrer's own referrers, nearest first,
    as recorded by the service (the adapter reads it; the domain cannot)."""

    input_id: str
    event: Event
    referrer_chain: tuple[str, ...] = ()

    @property
    def user_id(self) -> str:
        return self.event.key

    @property
    def at(self) -> datetime:
        return self.event.timestamp


@dataclass(frozen=True, slots=True)
class LifecycleInput:
    """A lifecycle event from `userops.lifecycle.v1`: a stage change (`from_stage` → `to_stage`,
    `activated` flag) or a segment entry/exit (`segment`)."""

    input_id: str
    user_id: str
    type: Literal["stage_changed", "segment_entered", "segment_exited"]
    at: datetime
    from_stage: str | None = None
    to_stage: str | None = None
    activated: bool = False
    segment: str | None = None

    @classmethod
    def from_record(cls, input_id: str, record: LifecycleEvent) -> LifecycleInput:
        """The input for one parsed `userops.lifecycle.v1` record (`parse_lifecycle`)."""
        if isinstance(record, StageChanged):
            return cls(
                input_id,
                record.user_id,
                "stage_changed",
                record.at,
                from_stage=record.from_stage,
                to_stage=record.to_stage,
                activated=record.activated,
            )
        return cls(input_id, record.user_id, record.type, record.at, segment=record.segment)

    @classmethod
    def from_wire(cls, input_id: str, data: bytes | str | dict[str, Any]) -> LifecycleInput:
        """Parse one wire record; raises `shared.contracts.ContractError` on a malformed one."""
        return cls.from_record(input_id, parse_lifecycle(data))


class TimerKind(StrEnum):
    LOT_EXPIRY = "lot_expiry"
    EXPIRY_WARNING = "expiry_warning"
    PENDING_RELEASE = "pending_release"
    HOLD_EXPIRY = "hold_expiry"
    TIER_REVIEW = "tier_review"


@dataclass(frozen=True, slots=True, order=True)
class Timer:
    """A durable timer to arm: fires `kind` for `key` (a lot id, hold id, or the user id for
    tier reviews) at `due_at`. The adapter upserts by (user, kind, key)."""

    due_at: datetime
    user_id: str
    kind: TimerKind
    key: str


@dataclass(frozen=True, slots=True)
class TimerInput:
    """A due timer, fired at or after `timer.due_at`."""

    timer: Timer

    @property
    def input_id(self) -> str:
        return timer_input_id(
            f"rewards.{self.timer.kind}", f"{self.timer.user_id}:{self.timer.key}", self.timer.due_at
        )

    @property
    def user_id(self) -> str:
        return self.timer.user_id

    @property
    def at(self) -> datetime:
        return self.timer.due_at


@dataclass(frozen=True, slots=True)
class RedemptionInput:
    """A redemption command: `reserve` `amount` points (the hold's id is derived from
    `input_id`, i.e. the API's Idempotency-Key), or `confirm` / `release` the hold `hold_id`."""

    input_id: str
    user_id: str
    action: Literal["reserve", "confirm", "release"]
    at: datetime
    amount: int = 0
    hold_id: str | None = None


@dataclass(frozen=True, slots=True)
class AdjustmentInput:
    """A manual adjustment by an operator (`actor`, `reason`): `points > 0` awards a lot of the
    `adjustment` rule; `points < 0` is a linked reversal of the award `reverses` (a lot id),
    taking back at most what is left of it and recording any shortfall as debt."""

    input_id: str
    user_id: str
    at: datetime
    points: int
    reason: str
    actor: str
    reverses: str | None = None


RewardsInput = EventInput | LifecycleInput | TimerInput | RedemptionInput | AdjustmentInput
