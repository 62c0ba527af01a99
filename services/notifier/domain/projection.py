"""The notifier's own projection of one user, built from the topics it consumes (DESIGN.md §1).

`apply(p, input, now)` folds one input into the projection in place (pure: no I/O, no clock):

- raw events: `identify` traits (scalar values only; `email`, `timezone`, `locale` also set the
  fields of those names), `context.timezone` / `context.locale`, and `NPS Submitted` answers;
- lifecycle: stage (+ since when, + the `activated` flag), segments entered and exited;
- rewards: balance, tier, and the lots of points that will expire, by the ledger's lot id
  (redemptions and reversals spend them earliest-expiry-first, like the ledger, so the
  projection approximates the rewards service's lots; the balance each event states wins);
- preference changes: the unsubscribed scopes (`all`, `channel:<c>`, `topic:<t>`).

Late inputs never move a field back in time: each fact keeps the instant it was last set.
Every structure is bounded (traits, lots, cap history, one entry per campaign).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from services.notifier.domain.caps import SentRecord
from services.notifier.domain.inputs import (
    EventInput,
    ExpiryCheck,
    Input,
    PreferenceChanged,
    RewardsEvent,
    SegmentChanged,
    StageChanged,
)
from services.notifier.domain.nps import NpsAnswer, parse_comment, parse_score

MAX_TRAITS: Final = 64
MAX_TRAIT_CHARS: Final = 500
MAX_LOTS: Final = 64
Scalar = str | int | float | bool


@dataclass(frozen=True, slots=True)
class ProjectionRules:
    """Which raw events the projection reads: the signup event and the NPS answer event."""

    signup_event: str = "Signed Up"
    nps_event: str = "NPS Submitted"
    score_property: str = "score"
    comment_property: str = "comment"


DEFAULT_RULES: Final = ProjectionRules()


@dataclass(slots=True)
class Lot:
    """Points (still unspent, as far as the projection knows) that expire at `expires_at`;
    `lot_id` is the rewards ledger's id of the lot."""

    points: int
    expires_at: datetime
    lot_id: str = ""


@dataclass(slots=True)
class Entry:
    """The user's latest entry into a campaign: when, by which input, in which group
    (a variant name or `holdout`), and the goal window (`goal_until`, `converted_at`)."""

    at: datetime
    input_id: str
    group: str
    goal_until: datetime | None = None
    converted_at: datetime | None = None


@dataclass(slots=True)
class Projection:
    """What the notifier knows about one user. Mutable: `apply` updates it in place."""

    user_id: str
    stage: str | None = None
    stage_since: datetime | None = None
    activated: bool = False
    activated_at: datetime | None = None
    signup_at: datetime | None = None
    segments: set[str] = field(default_factory=set)
    tier: str | None = None
    timezone: str | None = None
    email: str | None = None
    locale: str | None = None
    traits: dict[str, Scalar] = field(default_factory=dict)
    traits_at: datetime | None = None
    unsubscribed: set[str] = field(default_factory=set)
    preferences_at: dict[str, datetime] = field(default_factory=dict)
    points_balance: int = 0
    lots: list[Lot] = field(default_factory=list)
    expiry_reminded: dict[str, datetime] = field(default_factory=dict)
    """Per points-expiring campaign: lots expiring at or before this instant were covered."""
    nps: NpsAnswer | None = None
    entries: dict[str, Entry] = field(default_factory=dict)
    sent: list[SentRecord] = field(default_factory=list)

    def subscribed(self, channel: str, topic: str | None) -> bool:
        """Whether the user still takes messages on `channel` about `topic`."""
        scopes = {"all", f"channel:{channel}"} | ({f"topic:{topic}"} if topic else set())
        return not (scopes & self.unsubscribed)


def apply(p: Projection, item: Input, rules: ProjectionRules = DEFAULT_RULES) -> NpsAnswer | None:
    """Fold `item` into `p`; returns the NPS answer the input carried, if any."""
    if isinstance(item, EventInput):
        return _event(p, item, rules)
    if isinstance(item, StageChanged):
        if p.stage_since is None or item.at >= p.stage_since:
            p.stage, p.stage_since = item.to_stage, item.at
            if item.to_stage == "new" and p.signup_at is None:
                p.signup_at = item.at
        if item.activated or item.to_stage == "activated":
            p.activated = True
            if item.to_stage == "activated" and (p.activated_at is None or item.at < p.activated_at):
                p.activated_at = item.at
    elif isinstance(item, SegmentChanged):
        (p.segments.add if item.entered else p.segments.discard)(item.segment)
    elif isinstance(item, RewardsEvent):
        _rewards(p, item)
    elif isinstance(item, PreferenceChanged):
        last = p.preferences_at.get(item.scope)
        if last is None or item.at >= last:
            p.preferences_at[item.scope] = item.at
            (p.unsubscribed.discard if item.subscribed else p.unsubscribed.add)(item.scope)
    elif isinstance(item, ExpiryCheck):
        p.lots = [lot for lot in p.lots if lot.expires_at > item.at]
    return None


def _event(p: Projection, item: EventInput, rules: ProjectionRules) -> NpsAnswer | None:
    ev = item.event
    newer = p.traits_at is None or ev.timestamp >= p.traits_at
    if newer:
        context = ev.context
        for name, attr in (("timezone", "timezone"), ("locale", "locale")):
            value = context.get(name)
            if isinstance(value, str) and value:
                setattr(p, attr, value[:64])
    if ev.type == "identify" and newer:
        p.traits_at = ev.timestamp
        for key, value in ev.traits.items():
            _set_trait(p, key, value)
    first_signup = p.signup_at is None or ev.timestamp < p.signup_at
    if ev.type == "track" and ev.event == rules.signup_event and first_signup:
        p.signup_at = ev.timestamp
    if ev.type == "track" and ev.event == rules.nps_event:
        score = parse_score(ev.properties.get(rules.score_property))
        if score is None:
            return None
        comment = parse_comment(ev.properties.get(rules.comment_property))
        answer = NpsAnswer(p.user_id, ev.timestamp, score, comment)
        if p.nps is None or answer.at >= p.nps.at:
            p.nps = answer
        return answer
    return None


def _set_trait(p: Projection, key: str, value: Any) -> None:
    if value is None:
        p.traits.pop(key, None)
        return
    if isinstance(value, str):
        value = value[:MAX_TRAIT_CHARS]
    elif not isinstance(value, (int, float, bool)):
        return  # nested traits are not template material
    if key in ("email", "timezone", "locale") and isinstance(value, str):
        setattr(p, key, value[:320])
    if key in p.traits or len(p.traits) < MAX_TRAITS:
        p.traits[key] = value


def _rewards(p: Projection, ev: RewardsEvent) -> None:
    points = ev.points or 0
    if ev.type == "points_awarded":
        p.points_balance += points
        if ev.expires_at is not None and points > 0:
            p.lots.append(Lot(points, ev.expires_at, ev.lot_id or ""))
            p.lots.sort(key=lambda lot: lot.expires_at)
            del p.lots[MAX_LOTS:]
    elif ev.type in ("points_redeemed", "points_reversed"):
        p.points_balance -= abs(points)
        _spend(p, abs(points))
    elif ev.type == "points_expired":
        p.points_balance -= abs(points)
        p.lots = [
            lot for lot in p.lots if lot.expires_at > ev.at and not (ev.lot_id and lot.lot_id == ev.lot_id)
        ]
    elif ev.type == "tier_changed" and ev.tier:
        p.tier = ev.tier
    if ev.balance is not None:
        p.points_balance = ev.balance
    p.points_balance = max(p.points_balance, 0)


def _spend(p: Projection, points: int) -> None:
    """Take `points` from the earliest-expiring lots, as the ledger spends them."""
    while points > 0 and p.lots:
        lot = p.lots[0]
        taken = min(points, lot.points)
        lot.points -= taken
        points -= taken
        if lot.points == 0:
            p.lots.pop(0)


def expiring(p: Projection, after: datetime | None, until: datetime) -> list[Lot]:
    """Lots expiring in `(after, until]` (all up to `until` when `after` is None)."""
    return [lot for lot in p.lots if (after is None or lot.expires_at > after) and lot.expires_at <= until]
