"""Replay: run the segmenter's decide functions over recorded events with a simulated clock.

Events are taken in timestamp order; the clock reads each event's timestamp when it is applied,
and every user's idle timer fires at its exact `next_timer_at` in between, as the live service's
timer rows would. Each event is one `batch.apply_batch` and each timer one `batch.apply_timers`,
the very batch decision the live service makes, so both reach the same stages, transitions and
output ids for the same events.
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
from services.segmenter.domain.batch import (
    BatchResult,
    anonymous_ids,
    apply_batch,
    apply_timers,
    involved_profiles,
)
from services.segmenter.domain.decide import StageChange, event_input_id
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

    def absorb(batch: BatchResult) -> None:
        for profile, state in batch.states.items():
            if state is not None:
                states[profile] = state
            else:
                states.pop(profile, None)
        for profile, due in batch.timers.items():
            timers.set(profile, due)
        for anonymous, user_id in batch.links:
            result.links.setdefault(anonymous, user_id)
        result.outputs += len(batch.outputs)
        for change in batch.history:
            result.transitions[(change.from_stage, change.to_stage)] += 1
        if keep_history:
            result.history += batch.history

    def fire(up_to: datetime) -> None:
        while (due := timers.pop_due(up_to)) is not None:
            result.timers_fired += 1
            absorb(apply_timers({due[0]: states.get(due[0])}, [due], cfg))

    for event in sorted(events, key=lambda e: e.timestamp):
        fire(event.timestamp)
        links = {a: result.links[a] for a in anonymous_ids([event]) if a in result.links}
        involved = {p: states.get(p) for p in involved_profiles([event], links)}
        result.events_applied += 1
        absorb(apply_batch(involved, links, [(event, event_input_id(event))], cfg, event.timestamp))
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
