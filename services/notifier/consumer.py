"""The notifier's handler on the shared consumer runtime: topics and timers → the pure domain.

Consumes `userops.events.v1`, `userops.lifecycle.v1` and `userops.rewards.v1` (decoded with
their contracts; input ids from the topic's contract name, so a renamed or test topic gives the
ids the live service gives). Per batch, in the runner's one transaction: lock every user of the
batch (`shared.runtime.locks`, creating first-seen users), read their projections, apply and
`decide` each message in order, re-check sends due now, and write everything through a
`SendBook`. Timers (a delayed or deferred send, the points-expiry check) take the same locks,
skipping users busy in an event batch; a timer whose user or send is gone is dropped with a log
line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.adapters import store
from services.notifier.book import SEND_TIMER, Channels, SendBook
from services.notifier.config import NotifierConfig
from services.notifier.domain.decide import decide
from services.notifier.domain.inputs import (
    EXPIRY_TIMER,
    EventInput,
    ExpiryCheck,
    Input,
    lifecycle_from_wire,
    rewards_from_wire,
)
from services.notifier.metrics import AfterCommit, NotifierMetrics
from shared import topics
from shared.events import Event, InvalidEvent
from shared.logging import get_logger
from shared.runtime import timers
from shared.runtime.errors import PermanentError
from shared.runtime.runner import Decoded, Message, Record

__all__ = ["EXPIRY_TIMER", "SEND_TIMER", "NotifierHandler"]

log = get_logger(__name__)


class NotifierHandler:
    """Records of the three topics (`decode`/`handle`) and the notifier's timers (`on_timers`).

    `physical` maps each consumed (physical) topic name to its contract name.
    """

    def __init__(
        self,
        cfg: NotifierConfig,
        channels: Channels,
        physical: Mapping[str, str],
        deliveries_topic: str,
        metrics: NotifierMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self._cfg = cfg
        self._channels = channels
        self._contracts = dict(physical)
        self._deliveries = deliveries_topic
        self._metrics = metrics
        self._clock = clock

    def _book(self) -> SendBook:
        return SendBook(self._cfg, self._channels, self._deliveries, self._metrics, self._clock())

    # -- topics ---------------------------------------------------------------------------------

    def decode(self, record: Record) -> Decoded[Input]:
        """The input and its scoped input id; a record breaking its contract is dead-lettered."""
        contract = self._contracts.get(record.topic, record.topic)
        try:
            if contract == topics.EVENTS:
                event = Event.from_bytes(record.value)
                item: Input = EventInput.of(event)
                return Decoded(item, item.input_id, event.received_at)
            if contract == topics.LIFECYCLE:
                item = lifecycle_from_wire(record.value)
            elif contract == topics.REWARDS:
                item = rewards_from_wire(record.value)
            else:
                raise PermanentError("unknown_topic", f"the notifier does not consume {record.topic}")
        except (InvalidEvent, ValueError) as exc:  # ContractError is a ValueError
            raise PermanentError("invalid_record", str(exc)) from exc
        return Decoded(item, item.input_id, None)

    async def handle(self, session: AsyncSession, messages: Sequence[Message[Input]]) -> None:
        book = self._book()
        locked = await store.lock_users(session, {m.value.user_id for m in messages})
        projections = locked.projections
        for m in messages:
            decision = decide(projections.get(m.value.user_id), m.value, self._cfg, book.now)
            projections[m.value.user_id] = decision.projection
            book.take(decision, m.received_at)
        await book.flush(session)
        counts: dict[str, int] = {}
        for m in messages:
            source = self._contracts.get(m.topic, m.topic)
            counts[source] = counts.get(source, 0) + 1
        inputs = self._metrics.inputs

        def observe() -> None:
            for source, n in counts.items():
                inputs.labels(source=source).inc(n)

        AfterCommit.of(session).add(observe)

    # -- timers ---------------------------------------------------------------------------------

    async def on_timers(
        self, session: AsyncSession, due: Sequence[timers.Timer], now: datetime
    ) -> Iterable[timers.Timer]:
        book = self._book()
        users = {str(t.payload.get("user_id") or t.key) for t in due}
        locked = await store.lock_users(session, users, create=False, skip_locked=True)
        handled: list[timers.Timer] = []
        sends = await store.get_sends(session, [t.key for t in due if t.kind == SEND_TIMER])
        for t in sorted(due, key=lambda t: t.due_at):
            user = str(t.payload.get("user_id") or t.key)
            if user in locked.busy:
                continue  # the user is in an event batch right now: offered again shortly
            handled.append(t)
            p = locked.projections.get(user)
            if user in locked.missing or p is None:
                log.warning("notifier timer dropped: its user is gone", kind=t.kind, due_at=str(t.due_at))
                continue
            if t.kind == EXPIRY_TIMER:
                decision = decide(p, ExpiryCheck.due(user, t.due_at), self._cfg, now)
                locked.projections[user] = decision.projection
                book.take(decision, None)
                continue
            stored = sends.get(t.key)
            if stored is None or stored.planned is None or stored.state not in ("planned", "deferred"):
                log.warning("send timer dropped: its send is gone or settled", key=t.key)
                continue
            book.settle(p, stored.planned, None)
        await book.flush(session)
        fired = self._metrics.inputs.labels(source="timers")
        AfterCommit.of(session).add(lambda: fired.inc(len(handled)))
        return handled
