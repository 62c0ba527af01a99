"""Builders for notifier domain tests: the shipped config, inputs at simulated instants, and a
one-user driver that runs decide and recheck the way the service will."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import count
from pathlib import Path
from typing import Any

import yaml

from services.notifier.config import NotifierConfig, load_config
from services.notifier.domain.decide import Decision, decide
from services.notifier.domain.inputs import (
    EventInput,
    ExpiryCheck,
    Input,
    PreferenceChanged,
    RewardsEvent,
    SegmentChanged,
    StageChanged,
)
from services.notifier.domain.projection import Projection
from services.notifier.domain.recheck import recheck, record_sent
from services.notifier.domain.sends import PlannedSend, SendOutcome
from services.notifier.domain.unsubscribe import UnsubscribeSigner
from shared.events import Event, format_ts

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "config" / "notifier.yaml"
# Tuesday 5 March 2024, 15:00 UTC = 10:00 in New York (the shipped default timezone).
T0 = datetime(2024, 3, 5, 15, 0, tzinfo=UTC)
SECRET = b"s" * 32
_ids = count()


@cache
def shipped() -> NotifierConfig:
    return load_config(SHIPPED)


def shipped_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SHIPPED.read_text())
    return copy.deepcopy(data)


def config(**changes: Any) -> NotifierConfig:
    """The shipped config with top-level keys replaced."""
    return NotifierConfig.model_validate({**shipped_data(), **changes})


def signer(cfg: NotifierConfig | None = None) -> UnsubscribeSigner:
    cfg = cfg or shipped()
    return UnsubscribeSigner(SECRET, cfg.unsubscribe.base_url, cfg.unsubscribe.ttl)


def at(days: float = 0, hours: float = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours)


def event(
    kind: str,
    when: datetime,
    user: str = "u1",
    *,
    name: str | None = None,
    properties: dict[str, Any] | None = None,
    traits: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    message_id: str | None = None,
) -> EventInput:
    wire: dict[str, Any] = {
        "messageId": message_id or f"msg-{next(_ids)}",
        "type": kind,
        "userId": user,
        "timestamp": format_ts(when),
        "receivedAt": format_ts(when),
    }
    if name is not None:
        wire["event"] = name
    for key, value in (("properties", properties), ("traits", traits), ("context", context)):
        if value is not None:
            wire[key] = value
    return EventInput.of(Event.from_wire(wire))


def track(name: str, when: datetime, user: str = "u1", **properties: Any) -> EventInput:
    return event("track", when, user, name=name, properties=properties)


def identify(when: datetime, user: str = "u1", **traits: Any) -> EventInput:
    return event("identify", when, user, traits=traits)


def stage(to: str, when: datetime, user: str = "u1", *, from_: str | None = None) -> StageChanged:
    return StageChanged(f"lc-{next(_ids)}", user, from_, to, when, to in ("activated",) or None)


def segment(name: str, when: datetime, user: str = "u1", *, entered: bool = True) -> SegmentChanged:
    return SegmentChanged(f"lc-{next(_ids)}", user, name, entered, when)


def rewards(kind: str, when: datetime, user: str = "u1", **fields: Any) -> RewardsEvent:
    return RewardsEvent(f"rw-{next(_ids)}", user, kind, when, **fields)


def expiry_check(when: datetime, user: str = "u1") -> ExpiryCheck:
    return ExpiryCheck.due(user, when)


def unsubscribe(scope: str, when: datetime, user: str = "u1") -> PreferenceChanged:
    return PreferenceChanged(f"pref-{next(_ids)}", user, scope, False, when)


def fire(
    p: Projection | None, item: Input, cfg: NotifierConfig | None = None, now: datetime | None = None
) -> Decision:
    """Run `decide` at `now` (default: the input's own time)."""
    return decide(p, item, cfg or shipped(), now or item.at)


def deliver(
    p: Projection, planned: PlannedSend, cfg: NotifierConfig | None = None, now: datetime | None = None
) -> list[SendOutcome]:
    """Re-check `planned` at its due time (or `now`), following deferrals like the timer worker,
    and count a sent message towards the caps. Returns every outcome in order."""
    cfg = cfg or shipped()
    when = now or planned.due_at
    outcomes = []
    for _ in range(3):
        outcome = recheck(p, planned, cfg, when, signer=signer(cfg))
        outcomes.append(outcome)
        if outcome.kind == "sent":
            record_sent(p, cfg.derived.campaigns[planned.campaign], when)
        if outcome.kind != "deferred" or outcome.until is None:
            break
        when = outcome.until
    return outcomes
