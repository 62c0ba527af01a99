"""Campaign triggers and goals: what starts a campaign for a user, and what counts as success.

A trigger is one mapping whose key says what it is (an unknown key is a config error):

- `stage_changed: {to: [at_risk], from: [active]}` — a lifecycle stage change (`from` optional);
- `segment_entered: <segment>` / `segment_exited: <segment>`;
- `rewards: {event: tier_changed, direction: up}` — a rewards event (`direction` and `tiers`
  apply to `tier_changed` only; the tier order is the config's `tiers` list);
- `points_expiring: {within: 7d, min_points: 1}` — points of the user's lots expire within that
  long (found by the notifier's own timer, `ExpiryCheck`); each lot is reminded about once;
- `event: {name: Signed Up, where: [{property: plan, op: eq, value: pro}]}` — a raw track event;
- `nps: {category: [detractor]}` — an `NPS Submitted` answer in those categories.

A goal (`event: <name>`, `stage: [active, ...]` or `rewards: points_redeemed`, with `within`) is
reached when a matching input arrives after the user entered the campaign and no later than the
campaign's delay plus `within` after it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal, Self, Union

from pydantic import Discriminator, Field, Tag, model_validator

from services.notifier.domain.conditions import PropertyCondition, properties_hold
from services.notifier.domain.duration import Duration
from services.notifier.domain.inputs import (
    REWARDS_EVENTS,
    EventInput,
    ExpiryCheck,
    Input,
    RewardsEvent,
    SegmentChanged,
    StageChanged,
)
from services.notifier.domain.nps import NpsAnswer
from services.notifier.domain.projection import Lot, Projection, expiring
from shared.config import StrictModel
from shared.contracts.lifecycle import STAGES

Stage = Literal["new", "activated", "active", "reactivated", "at_risk", "dormant", "churned"]
RewardsType = Literal[
    "points_awarded", "points_redeemed", "points_expired", "points_reversed",
    "points_expiring_soon", "tier_changed", "badge_earned", "streak_extended", "referral_rewarded",
]  # fmt: skip
TAG_PREFIX: Final = "trigger:"
TRIGGER_KEYS: Final = (
    "stage_changed",
    "segment_entered",
    "segment_exited",
    "rewards",
    "points_expiring",
    "event",
    "nps",
)
assert set(RewardsType.__args__) == REWARDS_EVENTS  # type: ignore[attr-defined]
assert set(Stage.__args__) == set(STAGES)  # type: ignore[attr-defined]


class StageSpec(StrictModel):
    to: list[Stage] = Field(min_length=1)
    from_: list[Stage] | None = Field(default=None, alias="from")


class StageTrigger(StrictModel):
    stage_changed: StageSpec


class SegmentEnteredTrigger(StrictModel):
    segment_entered: str = Field(min_length=1)


class SegmentExitedTrigger(StrictModel):
    segment_exited: str = Field(min_length=1)


class RewardsSpec(StrictModel):
    event: RewardsType
    direction: Literal["up", "down"] | None = None
    tiers: list[str] | None = Field(default=None, min_length=1)
    """Only when the new tier is one of these."""

    @model_validator(mode="after")
    def _tier_only(self) -> Self:
        if (self.direction or self.tiers) and self.event != "tier_changed":
            raise ValueError("direction and tiers apply to event tier_changed only")
        return self


class RewardsTrigger(StrictModel):
    rewards: RewardsSpec


class ExpirySpec(StrictModel):
    within: Duration
    min_points: int = Field(default=1, ge=1)


class PointsExpiringTrigger(StrictModel):
    points_expiring: ExpirySpec


class EventSpec(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    where: list[PropertyCondition] = Field(default_factory=list)


class EventTrigger(StrictModel):
    event: EventSpec


class NpsSpec(StrictModel):
    category: list[Literal["detractor", "passive", "promoter"]] = Field(min_length=1)


class NpsTrigger(StrictModel):
    nps: NpsSpec


def _trigger_kind(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        key = str(next(iter(value)))
        if key in TRIGGER_KEYS:
            return TAG_PREFIX + key
    return None


Trigger = Annotated[
    Union[  # noqa: UP007 -- Annotated tags need the explicit Union
        Annotated[StageTrigger, Tag("trigger:stage_changed")],
        Annotated[SegmentEnteredTrigger, Tag("trigger:segment_entered")],
        Annotated[SegmentExitedTrigger, Tag("trigger:segment_exited")],
        Annotated[RewardsTrigger, Tag("trigger:rewards")],
        Annotated[PointsExpiringTrigger, Tag("trigger:points_expiring")],
        Annotated[EventTrigger, Tag("trigger:event")],
        Annotated[NpsTrigger, Tag("trigger:nps")],
    ],
    Discriminator(
        _trigger_kind,
        custom_error_type="unknown_trigger",
        custom_error_message="a trigger is a mapping with exactly one of the keys: "
        + ", ".join(TRIGGER_KEYS),
    ),
]


class Goal(StrictModel):
    """Success of a campaign within `within` of entry: a tracked `event`, a `stage` reached, or
    a `rewards` event (e.g. `points_redeemed`)."""

    event: str | None = Field(default=None, min_length=1)
    stage: list[Stage] | None = Field(default=None, min_length=1)
    rewards: RewardsType | None = None
    within: Duration

    @model_validator(mode="after")
    def _one(self) -> Self:
        if sum(x is not None for x in (self.event, self.stage, self.rewards)) != 1:
            raise ValueError("a goal names exactly one of event, stage or rewards")
        return self


def matches(
    trigger: Trigger,
    item: Input,
    p: Projection,
    *,
    tiers: list[str],
    answer: NpsAnswer | None,
) -> bool:
    """Whether `item` (already applied to `p`) fires `trigger`. Points-expiring triggers are
    matched by `expiring_due`, since they need the campaign's reminder mark."""
    if isinstance(trigger, StageTrigger):
        spec = trigger.stage_changed
        return (
            isinstance(item, StageChanged)
            and item.to_stage in spec.to
            and (spec.from_ is None or item.from_stage in spec.from_)
        )
    if isinstance(trigger, SegmentEnteredTrigger):
        return isinstance(item, SegmentChanged) and item.entered and item.segment == trigger.segment_entered
    if isinstance(trigger, SegmentExitedTrigger):
        return (
            isinstance(item, SegmentChanged) and not item.entered and item.segment == trigger.segment_exited
        )
    if isinstance(trigger, RewardsTrigger):
        return isinstance(item, RewardsEvent) and _rewards(trigger.rewards, item, tiers)
    if isinstance(trigger, EventTrigger):
        ev = item.event if isinstance(item, EventInput) else None
        return (
            ev is not None
            and ev.type == "track"
            and ev.event == trigger.event.name
            and properties_hold(trigger.event.where, ev.properties)
        )
    if isinstance(trigger, NpsTrigger):
        return answer is not None and answer.category in trigger.nps.category
    return False


def _rewards(spec: RewardsSpec, ev: RewardsEvent, tiers: list[str]) -> bool:
    if ev.type != spec.event:
        return False
    if spec.tiers is not None and ev.tier not in spec.tiers:
        return False
    if spec.direction is None:
        return True
    if ev.direction is not None:
        return ev.direction == spec.direction
    if ev.tier not in tiers or ev.from_tier not in tiers:
        return spec.direction == "up" and ev.from_tier is None and ev.tier is not None
    step = tiers.index(ev.tier) - tiers.index(ev.from_tier)
    return step > 0 if spec.direction == "up" else step < 0


def expiring_due(spec: ExpirySpec, campaign: str, p: Projection, item: Input) -> list[Lot]:
    """The lots an `ExpiryCheck` finds for this campaign: expiring within `spec.within` of the
    check and not yet covered by the campaign's reminder mark (empty for any other input).
    The caller moves the mark past them whether or not they add up to `min_points`, so the
    timer never fires twice for the same lots."""
    if not isinstance(item, ExpiryCheck):
        return []
    lots = expiring(p, p.expiry_reminded.get(campaign), item.at + spec.within)
    return [lot for lot in lots if lot.expires_at > item.at]


def next_expiry_check(p: Projection, specs: dict[str, ExpirySpec]) -> datetime | None:
    """When the user's next `ExpiryCheck` is due: the earliest instant a lot not yet reminded
    about comes within a campaign's window (None: nothing to check)."""
    due: list[datetime] = []
    for campaign, spec in specs.items():
        mark = p.expiry_reminded.get(campaign)
        due += [lot.expires_at - spec.within for lot in p.lots if mark is None or lot.expires_at > mark]
    return min(due, default=None)


def goal_reached(goal: Goal, item: Input) -> bool:
    """Whether `item` is the goal's event, stage change or rewards event."""
    if goal.event is not None:
        return isinstance(item, EventInput) and item.event.type == "track" and item.event.event == goal.event
    if goal.rewards is not None:
        return isinstance(item, RewardsEvent) and item.type == goal.rewards
    return isinstance(item, StageChanged) and goal.stage is not None and item.to_stage in goal.stage
