"""Builders for segmenter domain tests: events at simulated instants, and a one-user journey that
drives the decide functions the way the live service does (timers fire at their due instants)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.decide import Decision, StageChange, apply_event, apply_timer
from services.segmenter.domain.state import UserState
from shared.events import Event, format_ts

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
_ids = count()


def day(n: float, hours: float = 0) -> datetime:
    """T0 plus `n` days and `hours` hours."""
    return T0 + timedelta(days=n, hours=hours)


def event(
    kind: str,
    at: datetime,
    user: str | None = "u1",
    *,
    name: str | None = None,
    anonymous: str | None = None,
    message_id: str | None = None,
    properties: dict[str, Any] | None = None,
    traits: dict[str, Any] | None = None,
    previous_id: str | None = None,
) -> Event:
    """A wire event as ingest publishes it, parsed like consumers parse it."""
    wire: dict[str, Any] = {
        "messageId": message_id or f"msg-{next(_ids)}",
        "type": kind,
        "userId": user,
        "anonymousId": anonymous,
        "timestamp": format_ts(at),
        "receivedAt": format_ts(at),
    }
    if name is not None:
        wire["event"] = name
    if properties is not None:
        wire["properties"] = properties
    if traits is not None:
        wire["traits"] = traits
    if previous_id is not None:
        wire["previousId"] = previous_id
    return Event.from_wire(wire)


def track(name: str, at: datetime, user: str = "u1", **properties: Any) -> Event:
    return event("track", at, user, name=name, properties=properties)


def page(at: datetime, user: str = "u1") -> Event:
    return event("page", at, user, name=None)


def identify(at: datetime, user: str = "u1", **traits: Any) -> Event:
    return event("identify", at, user, traits=traits)


class Journey:
    """One user's life as the live service sees it: events applied at their own time (or a
    later `now`), idle timers firing exactly when due, every output collected."""

    def __init__(self, cfg: SegmenterConfig | None = None) -> None:
        self.cfg = cfg or SegmenterConfig()
        self.state: UserState | None = None
        self.timer: datetime | None = None
        self.outputs: list[dict[str, Any]] = []
        self.history: list[StageChange] = []
        self.activity_days: list[Any] = []

    def _absorb(self, decision: Decision) -> Decision:
        self.state = decision.state
        self.timer = decision.next_timer_at
        self.outputs += [e.to_wire() for e in decision.events]  # as they go on the wire
        self.history += decision.history
        if decision.activity_day is not None:
            self.activity_days.append(decision.activity_day)
        return decision

    def advance(self, now: datetime) -> None:
        """Fire every timer due up to `now`, each at its own instant."""
        while self.state is not None and self.timer is not None and self.timer <= now:
            due = self.timer
            self._absorb(apply_timer(self.state, self.cfg, due, due_at=due))

    def send(self, ev: Event, now: datetime | None = None) -> Decision:
        now = now or ev.timestamp
        self.advance(now)
        return self._absorb(apply_event(self.state, ev, self.cfg, now))

    @property
    def stage(self) -> str | None:
        return None if self.state is None else self.state.stage

    def stage_path(self) -> list[str | None]:
        return [self.history[0].from_stage, *(h.to_stage for h in self.history)]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.outputs if o["type"] == kind]
