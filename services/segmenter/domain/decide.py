"""The segmenter's decide functions: (state, input, config, now) → `Decision`. No I/O, no clock.

Inputs are events (`apply_event`) and due idle timers (`apply_timer`). Both first apply the
stage changes that time alone caused since the state was last evaluated (`state.as_of`), each at
its exact deadline, then settle the stage and segments at `now`. The live service and `replay`
call exactly these functions, so both produce the same stages and transitions.

Output ids are `shared.ids.output_id(input id, rule)`. The input id of an event is its scoped id
(`event_input_id`: the events topic's contract name, the user key and the `messageId`), so two
users reusing a `messageId` never share an output id; a change caused by time alone has the
input id of the idle timer firing at that deadline (`shared.ids.timer_input_id(IDLE_TIMER, user,
deadline)`), whether a timer or a later event noticed it, so redelivery and replay give the same
ids. Outputs are `shared.contracts.lifecycle` models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from typing import Final

from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.facts import record_event
from services.segmenter.domain.lifecycle import (
    compute_stage,
    next_deadline,
    refresh_derived,
    stage_at,
)
from services.segmenter.domain.segments import evaluate, next_segment_check
from services.segmenter.domain.state import UserState, day_date
from shared import ids, topics
from shared.contracts.lifecycle import LifecycleEvent, SegmentEntered, SegmentExited, StageChanged
from shared.events import Event

IDLE_TIMER: Final = "segmenter.idle"
"""The kind of the segmenter's one timer per user: its next time-driven stage or segment change."""

MAX_CATCH_UP: Final = 16
"""Time-driven changes applied in one call; a stage can change by time alone at most 5 times."""


@dataclass(frozen=True, slots=True)
class StageChange:
    """One stage history row; `event_id` is the id of the matching `stage_changed` event."""

    user_id: str
    from_stage: str | None
    to_stage: str
    reason: str
    at: datetime
    event_id: str


@dataclass(slots=True)
class Decision:
    """What one input did. The adapter stores `state`, appends `history`, writes `events` to
    the outbox (topic `userops.lifecycle.v1`, key `userId`), upserts `activity_day` into the
    activity-days table and sets the user's timer to `next_timer_at` (None: no timer).
    `amount_rejected`: the event's order amount was not a finite number within bounds, so the
    order counted without it (see `facts.order_amount`)."""

    state: UserState
    events: list[LifecycleEvent] = field(default_factory=list)
    history: list[StageChange] = field(default_factory=list)
    activity_day: date | None = None
    next_timer_at: datetime | None = None
    amount_rejected: bool = False
    nps: NpsResponse | None = None


NPS_RULE: Final = "nps"
"""The rule name of an NPS answer's row (`ids.output_id(input id, NPS_RULE)`)."""


@dataclass(frozen=True, slots=True)
class NpsResponse:
    """One valid NPS answer, for the `nps_responses` table (every answer, not only the latest)."""

    user_id: str
    event_id: str
    score: int
    at: datetime


def event_input_id(event: Event) -> str:
    """The scoped input id of an event read from the events topic (`shared.ids.input_id`)."""
    return ids.input_id(topics.EVENTS, event.key, event.message_id)


def idle_input_id(user_id: str, due_at: datetime) -> str:
    """The input id of a time-driven change: the user's idle timer firing at `due_at`."""
    return ids.timer_input_id(IDLE_TIMER, user_id, due_at)


def apply_event(
    state: UserState | None,
    event: Event,
    cfg: SegmenterConfig,
    now: datetime,
    *,
    input_id: str | None = None,
) -> Decision:
    """Apply one event to its user's state (None for a user never seen).

    `input_id` is the event's scoped input id (the runner's `Message.input_id`); it names every
    output the event causes. By default it is `event_input_id(event)`, the id the live service
    gives an event read from the events topic.

    `state` is updated in place and returned in the decision. The event's time is its
    `timestamp`, clamped to `now` if it lies beyond `now + future_tolerance`. A late event
    updates facts and counters; the stage is then recomputed from all facts, so arrival order
    never decides it.
    """
    ts = event.timestamp
    if ts > now + cfg.future_tolerance:
        ts = now
    if state is None:
        state = UserState.new(event.user_id or event.anonymous_id or event.key, ts)
    decision = Decision(state)
    _catch_up(decision, cfg, now)
    recorded = record_event(state, event, ts, cfg, now)
    if recorded.new_day is not None:
        decision.activity_day = day_date(recorded.new_day)
    decision.amount_rejected = recorded.amount_rejected
    refresh_derived(state, cfg)
    scoped = input_id if input_id is not None else event_input_id(event)
    if recorded.nps_score is not None:
        decision.nps = NpsResponse(state.user_id, ids.output_id(scoped, NPS_RULE), recorded.nps_score, ts)
    _settle(decision, cfg, now, scoped)
    return decision


def apply_timer(
    state: UserState, cfg: SegmenterConfig, now: datetime, *, due_at: datetime | None = None
) -> Decision:
    """Apply a due timer: time-driven stage changes up to `now`, then segments at `now`.

    `due_at` (the timer row's instant, default `now`) names the input of segment changes.
    """
    decision = Decision(state)
    # No fact changes between catching up and settling, so the stage the catch-up found
    # holding until its last deadline and that deadline hold at `now` too: computed once.
    known = _catch_up(decision, cfg, now)
    _settle(decision, cfg, now, partial(idle_input_id, state.user_id, due_at or now), known)
    return decision


def _catch_up(
    decision: Decision, cfg: SegmenterConfig, until: datetime
) -> tuple[str, datetime | None] | None:
    """Apply the time-driven changes up to `until`. Returns (the stage at `state.as_of` and
    until `until`, the next instant after `until` it changes) when it found them (it caught
    up fully), else None."""
    state = decision.state
    at = state.as_of
    if state.stage is None or at is None:
        return None
    current: str | None = None  # the stage at `at`, once known
    for _ in range(MAX_CATCH_UP):
        if current is None:
            current = stage_at(state, cfg, at)
        deadline = next_deadline(state, cfg, at, current)
        if deadline is None or deadline > until:
            state.as_of = at
            return current, deadline
        stage, reason = compute_stage(state, cfg, deadline)
        _change_stage(decision, cfg, stage, reason, deadline, idle_input_id(state.user_id, deadline))
        at = deadline
        current = stage
    state.as_of = at
    return None


def _settle(
    decision: Decision,
    cfg: SegmenterConfig,
    now: datetime,
    input_id: str | Callable[[], str],
    known: tuple[str, datetime | None] | None = None,
) -> None:
    """Settle the stage and segments at `now`. `known`: `_catch_up`'s result when no fact
    changed since (the stage at `as_of`, which holds until the deadline after it); `input_id`
    may be a function giving it (called only when an output needs it)."""
    state = decision.state
    at = now if state.as_of is None or now > state.as_of else state.as_of  # never back in time
    if known is not None and (known[1] is None or known[1] > at):
        stage, deadline_known = known[0], True
    else:
        stage, deadline_known = stage_at(state, cfg, at), False
    if stage != state.stage:  # the reason is worded only when it is needed
        input_id = _spelled(input_id)
        _change_stage(decision, cfg, stage, compute_stage(state, cfg, at)[1], at, input_id)
    state.as_of = at
    membership = evaluate(state, cfg, at, stage)
    state.rfm = membership.rfm
    state.rfm_segment = membership.rfm_segment
    if membership.segments != state.segments:
        before, after = set(state.segments), set(membership.segments)
        input_id = _spelled(input_id)
        for name in sorted(after - before):
            decision.events.append(_segment_event(state, cfg, "segment_entered", name, at, input_id))
        for name in sorted(before - after):
            decision.events.append(_segment_event(state, cfg, "segment_exited", name, at, input_id))
        state.segments = membership.segments
    deadline = known[1] if deadline_known and known is not None else next_deadline(state, cfg, at, stage)
    check = next_segment_check(state, cfg, at)
    if deadline is None or (check is not None and check < deadline):
        deadline = check
    decision.next_timer_at = deadline


def _spelled(input_id: str | Callable[[], str]) -> str:
    return input_id if isinstance(input_id, str) else input_id()


def _change_stage(
    decision: Decision, cfg: SegmenterConfig, stage: str, reason: str, at: datetime, input_id: str
) -> None:
    state = decision.state
    if stage == state.stage:
        return
    event_id = ids.output_id(input_id, f"stage:{state.stage}->{stage}")
    decision.history.append(StageChange(state.user_id, state.stage, stage, reason, at, event_id))
    decision.events.append(
        StageChanged(
            id=event_id,
            user_id=state.user_id,
            from_stage=state.stage,
            to_stage=stage,
            reason=reason,
            activated=state.activated_at is not None,
            at=at,
            config_version=cfg.version,
        )
    )
    state.stage = stage
    state.stage_since = at
    state.stage_reason = reason


def _segment_event(
    state: UserState, cfg: SegmenterConfig, kind: str, name: str, at: datetime, input_id: str
) -> LifecycleEvent:
    model = SegmentEntered if kind == "segment_entered" else SegmentExited
    return model(
        id=ids.output_id(input_id, f"{kind}:{name}"),
        user_id=state.user_id,
        segment=name,
        at=at,
        config_version=cfg.version,
    )
