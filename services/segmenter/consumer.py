"""The segmenter's handler on the shared consumer runtime: events and idle timers → the pure domain.

Per batch the handler only does I/O around the one batch decision (`domain.batch`): resolve
identities, lock every involved profile under the per-user lock (`shared.runtime.locks`, via
`store.lock_profiles`), read their states, call `apply_batch` (timers: `apply_timers`), then
write states, identity links, merges, history, activity days, NPS answers, segment membership,
timers and outbox rows with set-based statements, all in the runtime's one transaction. Timers take the same
row locks (skipping busy users), so a user's events and timers never race; a timer whose profile
row is gone is dropped with a log line.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from services.segmenter.adapters import store
from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.batch import (
    BatchResult,
    anonymous_ids,
    apply_batch,
    apply_timers,
    involved_profiles,
)
from services.segmenter.domain.decide import IDLE_TIMER, event_input_id
from services.segmenter.domain.state import UserState
from services.segmenter.metrics import SegmenterMetrics
from shared.contracts.base import SCHEMA_VERSION, _iso
from shared.contracts.lifecycle import LifecycleEvent, SegmentEntered, SegmentExited, StageChanged
from shared.events import Event, InvalidEvent
from shared.logging import get_logger
from shared.runtime import outbox, timers
from shared.runtime.errors import PermanentError
from shared.runtime.runner import Decoded, Message, Record

__all__ = ["IDLE_TIMER", "SegmenterHandler"]

log = get_logger(__name__)


class SegmenterHandler:
    """Events (`decode`/`handle`) and idle timers (`on_timers`) in, the segmenter's store out.

    `metrics`, if given, counts orders applied without their (non-finite or out-of-bounds) amount.
    """

    def __init__(
        self,
        cfg: SegmenterConfig,
        config_version: str,
        lifecycle_topic: str,
        clock: Callable[[], datetime],
        *,
        metrics: SegmenterMetrics | None = None,
    ) -> None:
        self._cfg = (
            cfg.model_copy(update={"version": config_version}) if cfg.version != config_version else cfg
        )
        self._topic = lifecycle_topic
        self._clock = clock
        self._metrics = metrics

    # -- events ---------------------------------------------------------------------------------

    def decode(self, record: Record) -> Decoded[Event]:
        """The event and its scoped input id (contract topic name, user key, messageId)."""
        try:
            event = Event.from_bytes(record.value)
        except InvalidEvent as exc:
            raise PermanentError("invalid_event", str(exc)) from exc
        return Decoded(event, event_input_id(event), event.received_at)

    async def handle(self, session: AsyncSession, messages: Sequence[Message[Event]]) -> None:
        now = self._clock()
        events = [m.value for m in messages]
        anonymous = anonymous_ids(events)
        links = await store.resolve_identities(session, anonymous)
        locked = await store.lock_profiles(session, involved_profiles(events, links), now)
        if anonymous:
            # Whoever links an anonymous id holds its row, which we hold now: read the links
            # again, so one committed meanwhile (another replica or lane merging the profile)
            # sends this batch's events to the user rather than to the retired profile.
            links = await store.resolve_identities(session, anonymous)
            late = involved_profiles(events, links) - locked.states.keys()
            if late:
                more = await store.lock_profiles(session, late, now)
                locked.states.update(more.states)
                locked.stages.update(more.stages)
                locked.created |= more.created
        inputs = [(m.value, m.input_id) for m in messages]
        with _gc_paused():
            result = apply_batch(_parse(locked.states), links, inputs, self._cfg, now)
        armed = await store.armed_timers(session, IDLE_TIMER, sorted(locked.stages))
        with _gc_paused():
            writes = self._plan(result, locked.created, locked.stages, armed)
        await self._write(session, writes)

    # -- timers ---------------------------------------------------------------------------------

    async def on_timers(
        self, session: AsyncSession, due: Sequence[timers.Timer], now: datetime
    ) -> Iterable[timers.Timer]:
        locked = await store.lock_profiles(session, [t.key for t in due], now, skip_locked=True)
        handled = []
        fire = []
        dropped = 0
        for t in due:
            if t.key in locked.busy:
                continue  # the user's row is busy in an event batch: offered again shortly
            handled.append(t)
            if t.key in locked.missing:
                dropped += 1  # nothing can ever lock this user again: offering it again would spin
            else:
                fire.append((t.key, t.due_at))
        if dropped:
            log.warning("idle timers dropped: each one's profile row is gone", kind=IDLE_TIMER, count=dropped)
        with _gc_paused():
            result = apply_timers(_parse({k: locked.states[k] for k, _ in fire}), fire, self._cfg)
            writes = self._plan(result, set(), locked.stages, {})  # fired timers: none armed
        await self._write(session, writes)
        return handled

    # -- writing --------------------------------------------------------------------------------

    def _plan(
        self, result: BatchResult, created: set[str], stages: dict[str, str], armed: dict[str, datetime]
    ) -> _Writes:
        """The rows that write `result`. `created`: placeholder rows made for this unit of work;
        `stages`: the stored stage of every locked profile counted in `stage_counts`; `armed`:
        the profiles' idle timers already armed (`store.armed_timers`).

        A profile's timer is moved only when its next deadline comes *earlier* than the armed
        one (or none is armed). A timer due before the deadline fires early, finds nothing
        changed at that instant (nothing changes before the deadline) and re-arms itself to the
        deadline: once per user per deadline period, instead of a timer write per event."""
        rows = []
        for uid in sorted(result.touched):
            state = result.states.get(uid)
            if state is None or state.stage is None:
                continue
            rows.append(
                store.ProfileRow(
                    user_id=uid,
                    state=state.to_json(),
                    stage=state.stage,
                    activated=state.activated,
                    first_seen=state.first_seen,
                    last_activity_at=state.last_activity_at,
                )
            )
        saved = {r.user_id for r in rows}
        entered, exited = result.membership()
        return _Writes(
            links=result.links,
            merges=result.merges,
            profiles=rows,
            stage_counts=stage_deltas(stages, created, rows, result.merges),
            placeholders=created - saved - {a for a, _ in result.merges},
            history=[
                store.HistoryRow(h.event_id, h.user_id, h.from_stage, h.to_stage, h.reason, h.at)
                for h in result.history
            ],
            days=result.days(),
            nps=[store.NpsRow(r.event_id, r.user_id, r.score, r.at) for r in result.nps],
            entered=entered,
            exited=exited,
            outbox=[
                outbox.OutboxMessage(id=out.id, topic=self._topic, key=profile, value=wire(out))
                for profile, out in result.outputs
            ],
            arm=[
                timers.Timer(IDLE_TIMER, uid, at)
                for uid, at in result.timers.items()
                if at is not None and (uid not in armed or at < armed[uid])
            ],
            disarm=[uid for uid, at in result.timers.items() if at is None],
            amounts_rejected=result.amounts_rejected,
        )

    async def _write(self, session: AsyncSession, w: _Writes) -> None:
        """Write the rows of `_plan`, one set-based statement per table."""
        await store.link_identities(session, w.links)
        await store.mark_merged(session, w.merges)
        await store.save_profiles(session, w.profiles)
        await store.add_stage_counts(session, w.stage_counts)
        await store.drop_placeholders(session, w.placeholders)
        await store.add_history(session, w.history)
        await store.add_activity_days(session, w.days)
        await store.add_nps_responses(session, w.nps)
        await store.set_segments(session, w.entered, w.exited)
        await outbox.add(session, w.outbox)
        await timers.schedule(session, w.arm)
        await timers.cancel(session, IDLE_TIMER, w.disarm)
        if w.amounts_rejected and self._metrics is not None:
            self._metrics.amounts_rejected.inc(w.amounts_rejected)


@dataclass(slots=True)
class _Writes:
    """Every row one unit of work writes (`SegmenterHandler._plan`)."""

    links: list[tuple[str, str]]
    merges: list[tuple[str, str]]
    profiles: list[store.ProfileRow]
    stage_counts: dict[str, int]
    placeholders: set[str]
    history: list[store.HistoryRow]
    days: list[tuple[str, date]]
    nps: list[store.NpsRow]
    entered: list[tuple[str, str, datetime]]
    exited: list[tuple[str, str]]
    outbox: list[outbox.OutboxMessage]
    arm: list[timers.Timer]
    disarm: list[str]
    amounts_rejected: int


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector over a batch's pure, synchronous work (no other task
    runs meanwhile). A batch allocates some hundred thousand objects that all live until it
    ends, so each collection the allocations would trigger finds nothing to free; the one after
    the pause looks at them once. Garbage without cycles is freed as ever, when unreferenced."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def stage_deltas(
    before: dict[str, str],
    created: set[str],
    saved: Sequence[store.ProfileRow],
    merges: Sequence[tuple[str, str]],
) -> dict[str, int]:
    """Users entering (+) and leaving (-) each stage when `saved` and `merges` are written.

    `before`: the stored stage of each counted profile (not merged); `created`: placeholders,
    counted once saved. A merged profile stops counting; one merged earlier never counts again.
    """
    after = dict(before)
    for row in saved:
        if row.user_id in before or row.user_id in created:
            after[row.user_id] = row.stage
    for anon, _ in merges:
        after.pop(anon, None)
    deltas: dict[str, int] = {}
    for uid, stage in before.items():
        if after.get(uid) != stage:
            deltas[stage] = deltas.get(stage, 0) - 1
    for uid, stage in after.items():
        if before.get(uid) != stage:
            deltas[stage] = deltas.get(stage, 0) + 1
    return deltas


def wire(out: LifecycleEvent) -> dict[str, Any]:
    """`out.to_wire()`, built by hand: the same object, without pydantic's per-record dump
    (a firing writes one or more lifecycle records per user). Tested equal to `to_wire`."""
    if out.schema_version != SCHEMA_VERSION or type(out) not in _WIRE_FIELDS:
        return out.to_wire()
    value: dict[str, Any] = {
        "schemaVersion": out.schema_version,
        "id": out.id,
        "userId": out.user_id,
        "at": _iso(out.at),
        "configVersion": out.config_version,
        "type": out.type,
    }
    if isinstance(out, StageChanged):
        value["from"] = out.from_stage
        value["to"] = out.to_stage
        value["reason"] = out.reason
        value["activated"] = out.activated
    else:
        value["segment"] = out.segment
    return value


_WIRE_FIELDS: Final[dict[type[Any], tuple[str, ...]]] = {
    StageChanged: ("from_stage", "to_stage", "reason", "activated"),
    SegmentEntered: ("segment",),
    SegmentExited: ("segment",),
}
"""The models `wire` builds and the fields of each beyond the common ones (a test checks
that these are all their fields)."""


def _parse(states: dict[str, bytes | None]) -> dict[str, UserState | None]:
    out: dict[str, UserState | None] = {}
    for uid, raw in states.items():
        decoded = store.decode_state(raw)
        out[uid] = UserState.from_dict(decoded) if decoded else None
    return out
