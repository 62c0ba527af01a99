"""`decide(projection, input, cfg, now) -> Decision`: which campaigns an input fires, and for each
a planned send (or a recorded suppression); plus the goals the input reached. No I/O, no clock.

For every enabled campaign, in config order:

1. the trigger matches the input (applied to the projection first, so a trigger sees the
   traits the same event carried);
2. the audience condition holds at `now`;
3. the re-entry rule allows it: never entered, or (with `reentry: N`) the last entry is at least
   N before this trigger;
4. the user is not churned for longer than `suppress_churned_after`, else the send is recorded as
   `suppressed` (`churned`) and the user does not enter;
5. the user enters the campaign in a group chosen by a stable hash of (campaign, user): the
   holdout (nothing is sent; the goal still counts) or a variant, for which a send is planned at
   `trigger time + delay`, to expire `expire_after` later.

Goals are intention-to-treat: the window opens at entry for both groups and lasts the delay plus
the goal's `within`. An input reaching a goal converts each open entry once.

The trigger time is the input's own time (its event timestamp), so "24 h after signup" means 24 h
after the signup happened. A replay of old inputs plans sends whose `expires_at` is long past,
and their re-check cancels them as `expired`: replaying history never messages users about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from services.notifier.config import NotifierConfig
from services.notifier.domain.assignment import HOLDOUT, assign
from services.notifier.domain.campaign import Campaign
from services.notifier.domain.caps import prune
from services.notifier.domain.conditions import holds
from services.notifier.domain.inputs import Input
from services.notifier.domain.projection import Entry, Lot, Projection, apply
from services.notifier.domain.sends import Conversion, EntryRecord, PlannedSend, SendOutcome, send_key
from services.notifier.domain.triggers import (
    PointsExpiringTrigger,
    expiring_due,
    goal_reached,
    matches,
    next_expiry_check,
)


@dataclass(slots=True)
class Decision:
    """What one input did. The adapter stores `projection`, schedules `sends` (by `send_key`),
    records `outcomes` (suppressions at trigger time), `entries` and `conversions`, and sets the
    user's one points-expiry timer to `next_check_at`, moving or deleting an existing one
    (None: no timer)."""

    projection: Projection
    sends: list[PlannedSend] = field(default_factory=list)
    outcomes: list[SendOutcome] = field(default_factory=list)
    entries: list[EntryRecord] = field(default_factory=list)
    conversions: list[Conversion] = field(default_factory=list)
    next_check_at: datetime | None = None


def decide(projection: Projection | None, item: Input, cfg: NotifierConfig, now: datetime) -> Decision:
    """Apply `item` to the user's projection (None: a user never seen) and decide what it fires.

    The projection is updated in place and returned in the decision. An input time later than
    `now` counts as `now`.
    """
    derived = cfg.derived
    if projection is not None and projection.user_id != item.user_id:
        raise ValueError(
            f"input for user {item.user_id!r} applied to the projection of {projection.user_id!r}"
        )
    p = projection if projection is not None else Projection(item.user_id)
    answer = apply(p, item, derived.rules)
    decision = Decision(p)
    at = min(item.at, now)
    _conversions(decision, item, cfg, at)
    for campaign in derived.campaigns.values():
        lots: list[Lot] = []
        if isinstance(campaign.trigger, PointsExpiringTrigger):
            spec = campaign.trigger.points_expiring
            lots = expiring_due(spec, campaign.name, p, item)
            if not lots:
                continue
            p.expiry_reminded[campaign.name] = max(lot.expires_at for lot in lots)
            if sum(lot.points for lot in lots) < spec.min_points:
                continue
        elif not matches(campaign.trigger, item, p, tiers=cfg.tiers, answer=answer):
            continue
        if campaign.audience is not None and not holds(campaign.audience, p, now):
            continue
        entry = p.entries.get(campaign.name)
        if entry is not None and (campaign.reentry is None or at < entry.at + campaign.reentry):
            continue
        key = send_key(item.input_id, campaign.name, campaign.channel)
        group = assign(campaign.name, p.user_id, campaign.holdout, campaign.variant_weights)
        suppressed = SendOutcome(
            "suppressed", key, campaign.name, group, campaign.channel, p.user_id, item.input_id, now
        )
        if churned_too_long(p, cfg, now):
            if group != HOLDOUT:  # a held-out user would get nothing anyway
                decision.outcomes.append(replace(suppressed, reason="churned"))
            continue
        _enter(decision, campaign, group, item.input_id, at, key, lots, cfg.version)
        if group == HOLDOUT:
            decision.outcomes.append(replace(suppressed, reason="holdout"))
    p.sent = prune(p.sent, derived.cap_horizon, now)
    decision.next_check_at = next_expiry_check(p, derived.expiry_specs)
    return decision


def churned_too_long(p: Projection, cfg: NotifierConfig, now: datetime) -> bool:
    """Whether the user has been `churned` for at least `suppress_churned_after`."""
    limit = cfg.suppress_churned_after
    return (
        limit is not None
        and p.stage == "churned"
        and p.stage_since is not None
        and now - p.stage_since >= limit
    )


def _enter(
    decision: Decision,
    campaign: Campaign,
    group: str,
    input_id: str,
    at: datetime,
    key: str,
    lots: list[Lot],
    config_version: str,
) -> None:
    p = decision.projection
    goal_until = at + campaign.delay + campaign.goal.within if campaign.goal else None
    p.entries[campaign.name] = Entry(at, input_id, group, goal_until)
    decision.entries.append(EntryRecord(campaign.name, p.user_id, group, at, input_id, goal_until))
    if group == HOLDOUT:
        return
    due = at + campaign.delay
    decision.sends.append(
        PlannedSend(
            send_key=key,
            campaign=campaign.name,
            channel=campaign.channel,
            topic=campaign.topic,
            user_id=p.user_id,
            input_id=input_id,
            variant=group,
            trigger_at=at,
            due_at=due,
            expires_at=due + campaign.expire_after,
            expiring_points=sum(lot.points for lot in lots) if lots else None,
            expiring_at=min(lot.expires_at for lot in lots) if lots else None,
            config_version=config_version,
        )
    )


def _conversions(decision: Decision, item: Input, cfg: NotifierConfig, at: datetime) -> None:
    p = decision.projection
    for name, entry in p.entries.items():
        campaign = cfg.derived.campaigns.get(name)
        if campaign is None or campaign.goal is None or entry.converted_at is not None:
            continue
        if entry.goal_until is None or not entry.at < at <= entry.goal_until:
            continue
        if goal_reached(campaign.goal, item):
            entry.converted_at = at
            decision.conversions.append(Conversion(name, p.user_id, entry.group, entry.at, at, item.input_id))
