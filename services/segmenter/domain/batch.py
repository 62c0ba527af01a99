"""One batch decision, shared by the live consumer and replay: (states, links, inputs) → effects.

`apply_batch` applies a batch of events in order: identity links and alias merges first (as
each event arrives), then `decide.apply_event` on the event's profile. `apply_timers` fires due
idle timers. Both return a `BatchResult`: the new states and every effect the store must write
(links, merges, history rows, activity days, NPS answers, segment membership, lifecycle
events, timers).
Pure: no I/O, no clock; the caller locks and reads the involved profiles, calls this, writes.

A merge moves the retired anonymous profile's effects *of this batch* to its user too (history
rows, activity days, NPS answers) and drops its pending segment membership, as the store's merge does for
rows written by earlier batches: a batch that both creates rows for an anonymous profile and
merges it leaves nothing under the retired id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.decide import Decision, NpsResponse, StageChange, apply_event, apply_timer
from services.segmenter.domain.identity import identity_link, profile_id
from services.segmenter.domain.merge import merge_alias
from services.segmenter.domain.state import UserState
from shared.contracts.lifecycle import LifecycleEvent, SegmentEntered, SegmentExited
from shared.events import Event


@dataclass(slots=True)
class BatchResult:
    """The effects of one batch, in the order they happened."""

    states: dict[str, UserState | None]
    """Every involved profile's state after the batch; None: never seen, or retired by a merge."""
    touched: set[str] = field(default_factory=set)
    """Profiles whose state the batch changed (to be saved)."""
    links: list[tuple[str, str]] = field(default_factory=list)
    """New identity links (anonymous id, user id); the first link of an id wins."""
    merges: list[tuple[str, str]] = field(default_factory=list)
    """Anonymous profiles merged into users' (anonymous id, user id), in order."""
    history: list[StageChange] = field(default_factory=list)
    """Stage history rows; `user_id` is the profile the row belongs to after the batch."""
    activity_days: dict[str, set[date]] = field(default_factory=dict)
    """Profile → days of activity the batch recorded."""
    segments: dict[str, dict[str, datetime | None]] = field(default_factory=dict)
    """Profile → segment → since (entered) or None (left): membership net of the whole batch."""
    outputs: list[tuple[str, LifecycleEvent]] = field(default_factory=list)
    """(profile, event) for `userops.lifecycle.v1`, keyed by the profile."""
    timers: dict[str, datetime | None] = field(default_factory=dict)
    """Profile → its next idle timer (None: cancel it)."""
    amounts_rejected: int = 0
    """Orders applied without their amount (not a finite number within bounds)."""
    nps: list[NpsResponse] = field(default_factory=list)
    """Valid NPS answers; `user_id` is the profile the row belongs to after the batch."""
    _history_of: dict[str, list[int]] = field(default_factory=dict, repr=False)

    def days(self) -> list[tuple[str, date]]:
        """Activity days as sorted (profile, day) rows."""
        return sorted((p, d) for p, days in self.activity_days.items() for d in days)

    def membership(self) -> tuple[list[tuple[str, str, datetime]], list[tuple[str, str]]]:
        """(entered (profile, segment, since), exited (profile, segment)), net of the batch."""
        entered = [(p, s, at) for p, m in self.segments.items() for s, at in m.items() if at is not None]
        exited = [(p, s) for p, m in self.segments.items() for s, at in m.items() if at is None]
        return entered, exited


def anonymous_ids(events: Iterable[Event]) -> set[str]:
    """Ids in `events` that may be linked to a user: anonymous ids and aliases' previous ids."""
    out: set[str] = set()
    for e in events:
        if e.anonymous_id:
            out.add(e.anonymous_id)
        if e.type == "alias" and e.previous_id:
            out.add(e.previous_id)
    return out


def involved_profiles(events: Iterable[Event], links: Mapping[str, str]) -> set[str]:
    """Every profile a batch of `events` may read or write, given the known links of its
    anonymous ids: the profiles to lock and pass to `apply_batch`."""
    events = list(events)
    anonymous = anonymous_ids(events)
    out = {e.user_id for e in events if e.user_id} | anonymous
    out |= {links[a] for a in anonymous if a in links}
    out.discard("")
    return out


def apply_batch(
    states: Mapping[str, UserState | None],
    links: Mapping[str, str],
    inputs: Sequence[tuple[Event, str]],
    cfg: SegmenterConfig,
    now: datetime,
) -> BatchResult:
    """Apply `inputs` ((event, scoped input id), in order) at `now`.

    `states` must hold every profile of `involved_profiles` (a missing one counts as never
    seen), `links` at least the known links of the batch's anonymous ids. The states are
    updated in place (the decide functions do) and returned in `BatchResult.states`.
    """
    result = BatchResult(states=dict(states))
    known = dict(links)
    for event, input_id in inputs:
        link = identity_link(event)
        if link is not None:
            anon, user_id = link
            if anon not in known:
                known[anon] = user_id
                result.links.append((anon, user_id))
            anon_state = result.states.get(anon)
            if anon_state is not None and known[anon] == user_id:
                _merge(result, anon, user_id, cfg)
        profile = profile_id(event, known)
        decision = apply_event(result.states.get(profile), event, cfg, now, input_id=input_id)
        _absorb(result, profile, decision)
    return result


def apply_timers(
    states: Mapping[str, UserState | None], due: Sequence[tuple[str, datetime]], cfg: SegmenterConfig
) -> BatchResult:
    """Fire idle timers `due` ((profile, due instant)), each at its exact instant, so history
    records when time alone changed the stage. A profile without state (merged away) is skipped."""
    result = BatchResult(states=dict(states))
    for profile, due_at in due:
        state = result.states.get(profile)
        if state is not None:
            _absorb(result, profile, apply_timer(state, cfg, due_at, due_at=due_at))
    return result


def _absorb(result: BatchResult, profile: str, decision: Decision) -> None:
    result.states[profile] = decision.state
    result.touched.add(profile)
    result.timers[profile] = decision.next_timer_at
    result.amounts_rejected += decision.amount_rejected
    if decision.nps is not None:
        result.nps.append(replace(decision.nps, user_id=profile))
    if decision.activity_day is not None:
        result.activity_days.setdefault(profile, set()).add(decision.activity_day)
    if decision.history:
        rows = result._history_of.setdefault(profile, [])
        for change in decision.history:
            rows.append(len(result.history))
            result.history.append(change)
    for out in decision.events:
        result.outputs.append((profile, out))
        if isinstance(out, SegmentEntered):
            result.segments.setdefault(profile, {})[out.segment] = out.at
        elif isinstance(out, SegmentExited):
            result.segments.setdefault(profile, {})[out.segment] = None


def _merge(result: BatchResult, anon: str, user_id: str, cfg: SegmenterConfig) -> None:
    anon_state = result.states[anon]
    assert anon_state is not None
    result.states[user_id] = merge_alias(anon_state, result.states.get(user_id), cfg, user_id)
    result.states[anon] = None
    result.merges.append((anon, user_id))
    result.touched.add(user_id)
    result.touched.discard(anon)
    result.timers[anon] = None
    # This batch's rows of the retired profile follow it, like the stored ones do.
    moved = result._history_of.pop(anon, [])
    for i in moved:
        result.history[i] = replace(result.history[i], user_id=user_id)
    if moved:
        result._history_of.setdefault(user_id, []).extend(moved)
    result.nps = [replace(r, user_id=user_id) if r.user_id == anon else r for r in result.nps]
    days = result.activity_days.pop(anon, None)
    if days:
        result.activity_days.setdefault(user_id, set()).update(days)
    result.segments.pop(anon, None)  # the store drops a merged profile's membership
