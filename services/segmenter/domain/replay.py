"""Replay: run the segmenter's decide functions over recorded events with a simulated clock.

Events are taken in timestamp order; the clock reads each event's timestamp when it is applied,
and every user's idle timer fires at its exact `next_timer_at` in between, as the live service's
timer rows would. The same `apply_event`, `apply_timer`, `merge_alias` and identity rules run
here and in the live service, so both reach the same stages and transitions for the same events.
"""

from __future__ import annotations

import gzip
import heapq
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.decide import Decision, StageChange, apply_event, apply_timer
from services.segmenter.domain.identity import identity_link, profile_id
from services.segmenter.domain.merge import merge_alias
from services.segmenter.domain.state import UserState
from shared.events import Event, InvalidEvent


@dataclass(slots=True)
class ReplayResult:
    """Final states and what happened on the way."""

    states: dict[str, UserState]
    """Profile id → final state (merged anonymous profiles are gone; see `links`)."""
    links: dict[str, str] = field(default_factory=dict)
    """Anonymous id → the user id it was merged into."""
    transitions: Counter[tuple[str | None, str]] = field(default_factory=Counter)
    """(from, to) → how many stage changes; `from` is None for a user's first stage."""
    history: list[StageChange] = field(default_factory=list)
    """Every stage change in order, when `keep_history` was asked for."""
    events_applied: int = 0
    timers_fired: int = 0
    outputs: int = 0
    """How many output events (stage and segment changes) were produced."""

    @property
    def stages(self) -> Counter[str]:
        """Stage → number of users in it."""
        return Counter(s.stage for s in self.states.values() if s.stage is not None)

    @property
    def segments(self) -> Counter[str]:
        """Segment → number of members."""
        return Counter(name for s in self.states.values() for name in s.segments)


class _Timers:
    """One pending timer per user, the latest `next_timer_at` replacing the previous one."""

    def __init__(self) -> None:
        self._due: dict[str, datetime] = {}
        self._heap: list[tuple[datetime, int, str]] = []
        self._seq = 0

    def set(self, user_id: str, due: datetime | None) -> None:
        if due is None:
            self._due.pop(user_id, None)
            return
        self._due[user_id] = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, user_id))

    def pop_due(self, until: datetime) -> tuple[str, datetime] | None:
        while self._heap and self._heap[0][0] <= until:
            due, _, user_id = heapq.heappop(self._heap)
            if self._due.get(user_id) == due:
                del self._due[user_id]
                return user_id, due
        return None


def replay(
    events: Iterable[Event],
    cfg: SegmenterConfig,
    until: datetime | None = None,
    *,
    keep_history: bool = False,
) -> ReplayResult:
    """Apply `events` in timestamp order (stable for ties); then fire timers due up to `until`."""
    result = ReplayResult(states={})
    states = result.states
    timers = _Timers()

    def absorb(profile: str, decision: Decision) -> None:
        states[profile] = decision.state
        timers.set(profile, decision.next_timer_at)
        result.outputs += len(decision.events)
        for change in decision.history:
            result.transitions[(change.from_stage, change.to_stage)] += 1
        if keep_history:
            result.history += decision.history

    def fire(up_to: datetime) -> None:
        while (due := timers.pop_due(up_to)) is not None:
            profile, at = due
            result.timers_fired += 1
            absorb(profile, apply_timer(states[profile], cfg, at, due_at=at))

    for event in sorted(events, key=lambda e: e.timestamp):
        fire(event.timestamp)
        link = identity_link(event)
        if link is not None:
            anonymous, user_id = link
            result.links.setdefault(anonymous, user_id)
            if anonymous in states and result.links[anonymous] == user_id:
                merged = merge_alias(states.pop(anonymous), states.get(user_id), cfg, user_id)
                timers.set(anonymous, None)
                states[user_id] = merged
        profile = profile_id(event, result.links)
        result.events_applied += 1
        absorb(profile, apply_event(states.get(profile), event, cfg, event.timestamp))
    if until is not None:
        fire(until)
    return result


def read_ndjson(path: Path) -> Iterator[Event]:
    """Events from a file of one JSON event per line (gzip if the name ends in `.gz`).

    Blank lines are skipped; a bad line raises ValueError naming the file and line number.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield Event.from_bytes(line)
            except InvalidEvent as exc:
                raise ValueError(f"{path}:{number}: {exc}") from exc
