"""The segmenter's handler on the shared consumer runtime: events and idle timers → the pure domain.

Per batch: resolve identities, lock every involved profile row (user-id order), run the domain
exactly as `domain.replay` does (links, merges, `apply_event`), then write states, history,
activity days, segment membership, timers and outbox rows with set-based statements, all in the
runtime's one transaction. Timers take the same row locks (skipping busy users), so a user's
events and timers never race.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.segmenter.adapters import store
from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.decide import Decision, apply_event, apply_timer
from services.segmenter.domain.identity import identity_link, profile_id
from services.segmenter.domain.merge import merge_alias
from services.segmenter.domain.state import UserState
from shared.events import Event, InvalidEvent
from shared.runtime import outbox, timers
from shared.runtime.errors import PermanentError
from shared.runtime.runner import Decoded, Message

IDLE_TIMER = "segmenter.idle"


@dataclass
class _Batch:
    """Effects of one batch, written together at the end."""

    states: dict[str, UserState | None]
    created: set[str]
    touched: set[str] = field(default_factory=set)
    merged: list[tuple[str, str]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    history: list[store.HistoryRow] = field(default_factory=list)
    days: set[tuple[str, date]] = field(default_factory=set)
    outputs: list[outbox.OutboxMessage] = field(default_factory=list)
    timer_at: dict[str, datetime | None] = field(default_factory=dict)


class SegmenterHandler:
    def __init__(
        self, cfg: SegmenterConfig, config_version: str, lifecycle_topic: str, clock: Callable[[], datetime]
    ) -> None:
        self._cfg = (
            cfg.model_copy(update={"version": config_version}) if cfg.version != config_version else cfg
        )
        self._topic = lifecycle_topic
        self._clock = clock

    # -- events ---------------------------------------------------------------------------------

    def decode(self, topic: str, key: bytes | None, value: bytes) -> Decoded[Event]:
        try:
            event = Event.from_bytes(value)
        except InvalidEvent as exc:
            raise PermanentError("invalid_event", str(exc)) from exc
        return Decoded(event, f"{event.key}\x1f{event.message_id}", event.received_at)

    async def handle(self, session: AsyncSession, messages: Sequence[Message[Event]]) -> None:
        now = self._clock()
        events = [m.value for m in messages]
        anonymous = {e.anonymous_id for e in events if e.anonymous_id}
        anonymous |= {e.previous_id for e in events if e.type == "alias" and e.previous_id}
        links = await store.resolve_identities(session, anonymous)
        involved = {e.user_id for e in events if e.user_id} | anonymous | set(links.values())
        involved.discard("")
        states, created = await store.lock_profiles(session, involved, now)
        if anonymous:
            # Whoever links an anonymous id holds its row, which we hold now: read the links
            # again, so one committed meanwhile (another replica or lane merging the profile)
            # sends this batch's events to the user rather than to the retired profile.
            links = await store.resolve_identities(session, anonymous)
            late = set(links.values()) - states.keys()
            if late:
                more, made = await store.lock_profiles(session, late, now)
                states.update(more)
                created |= made
        batch = _Batch(states=_parse(states), created=created)
        for event in events:
            link = identity_link(event)
            if link is not None:
                anon, user_id = link
                if anon not in links:
                    links[anon] = user_id
                    batch.links.append((anon, user_id))
                anon_state = batch.states.get(anon)
                if anon_state is not None and links[anon] == user_id:
                    batch.states[user_id] = merge_alias(
                        anon_state, batch.states.get(user_id), self._cfg, user_id
                    )
                    batch.states[anon] = None
                    batch.merged.append((anon, user_id))
                    batch.touched.add(user_id)
                    batch.timer_at[anon] = None
            profile = profile_id(event, links)
            self._absorb(batch, profile, apply_event(batch.states.get(profile), event, self._cfg, now))
        await self._write(session, batch)

    # -- timers ---------------------------------------------------------------------------------

    async def on_timers(
        self, session: AsyncSession, due: Sequence[timers.Timer], now: datetime
    ) -> Iterable[timers.Timer]:
        states, _ = await store.lock_profiles(session, [t.key for t in due], now, skip_locked=True)
        batch = _Batch(states=_parse(states), created=set())
        handled = []
        for t in due:
            if t.key not in states:
                continue  # the user's row is busy in an event batch: offered again shortly
            handled.append(t)
            state = batch.states.get(t.key)
            if state is None:
                continue  # merged away meanwhile
            # Fire at the exact deadline, so history records when time alone changed the stage.
            self._absorb(batch, t.key, apply_timer(state, self._cfg, t.due_at, due_at=t.due_at))
        await self._write(session, batch)
        return handled

    # -- shared ---------------------------------------------------------------------------------

    def _absorb(self, batch: _Batch, profile: str, decision: Decision) -> None:
        state = decision.state
        batch.states[profile] = state
        batch.touched.add(profile)
        batch.timer_at[profile] = decision.next_timer_at
        if decision.activity_day is not None:
            batch.days.add((profile, decision.activity_day))
        for change in decision.history:
            batch.history.append(
                store.HistoryRow(
                    change.event_id, profile, change.from_stage, change.to_stage, change.reason, change.at
                )
            )
        for out in decision.events:
            batch.outputs.append(
                outbox.OutboxMessage(id=out["id"], topic=self._topic, key=profile, value=out)
            )

    async def _write(self, session: AsyncSession, batch: _Batch) -> None:
        await store.link_identities(session, batch.links)
        await store.mark_merged(session, batch.merged)
        rows = []
        for uid in sorted(batch.touched):
            state = batch.states.get(uid)
            if state is None or state.stage is None:
                continue
            rows.append(
                store.ProfileRow(
                    user_id=uid,
                    state_json=orjson.dumps(state.to_dict(), option=orjson.OPT_NON_STR_KEYS).decode(),
                    stage=state.stage,
                    activated=state.activated,
                    first_seen=state.first_seen,
                    last_activity_at=state.last_activity_at,
                )
            )
        await store.save_profiles(session, rows)
        saved = {r.user_id for r in rows}
        await store.drop_placeholders(session, batch.created - saved - {a for a, _ in batch.merged})
        await store.add_history(session, batch.history)
        await store.add_activity_days(session, sorted(batch.days))
        await store.set_segments(session, *_net_segments(batch.outputs))
        await outbox.add(session, batch.outputs)
        arm = [timers.Timer(IDLE_TIMER, uid, at) for uid, at in batch.timer_at.items() if at is not None]
        disarm = [uid for uid, at in batch.timer_at.items() if at is None]
        await timers.schedule(session, arm)
        await timers.cancel(session, IDLE_TIMER, disarm)


def _parse(states: dict[str, dict[str, object] | None]) -> dict[str, UserState | None]:
    return {uid: (UserState.from_dict(s) if s else None) for uid, s in states.items()}


def _net_segments(
    outputs: list[outbox.OutboxMessage],
) -> tuple[list[tuple[str, str, datetime]], list[tuple[str, str]]]:
    """Membership changes of a batch, net of a user entering and leaving within it."""
    final: dict[tuple[str, str], datetime | None] = {}
    for out in outputs:
        v = out.value
        if v["type"] == "segment_entered":
            final[(out.key, v["segment"])] = datetime.fromisoformat(v["at"])
        elif v["type"] == "segment_exited":
            final[(out.key, v["segment"])] = None
    ins = [(u, s, at) for (u, s), at in final.items() if at is not None]
    outs = [(u, s) for (u, s), at in final.items() if at is None]
    return ins, outs
