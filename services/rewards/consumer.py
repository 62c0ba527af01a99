"""The rewards handler on the shared consumer runtime: events, lifecycle records and timers.

Per event batch (one transaction, owned by the runtime): find every user the batch may write
for — the batch's users, the referrers their events claim and the referrers already recorded for
them (a referral is paid to both sides at the referee's activation) — and lock them all up front
in key order (`store.lock_users`, the shared per-user lock); then lock the budgets the inputs
may draw on (`decide.budgeted_rules`), decide every message in order (`RewardsUnit.apply`, the
domain's one `decide`) and write the effects. Timers take the same user locks, skipping users
busy in an event batch; a timer whose user row is gone is dropped with a log line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.adapters import budgets, referrals, store
from services.rewards.adapters.state_cache import StateCache
from services.rewards.config import RewardsConfig
from services.rewards.domain.decide import budgeted_rules
from services.rewards.domain.inputs import EventInput, LifecycleInput, RewardsInput, TimerInput
from services.rewards.domain.referrals import claimed_referrer
from services.rewards.metrics import RewardsMetrics
from services.rewards.unit import RewardsUnit, domain_timer
from shared import topics
from shared.contracts import ContractError, parse_lifecycle
from shared.events import Event, InvalidEvent
from shared.ids import input_id
from shared.logging import get_logger
from shared.runtime import timers
from shared.runtime.errors import PermanentError
from shared.runtime.runner import Decoded, Message, Record

log = get_logger(__name__)

ConsumedInput = EventInput | LifecycleInput


def budget_limits(cfg: RewardsConfig, inputs: Iterable[RewardsInput]) -> dict[str, int]:
    """The configured limits of every budget the inputs may draw on."""
    rules = {rule for inp in inputs for rule in budgeted_rules(inp, cfg)}
    limits = {r.id: r.budget.limit for r in cfg.rules if r.budget is not None}
    return {rule: limits[rule] for rule in rules}


class RewardsHandler:
    """`decode`/`handle` for `userops.events.v1` and `userops.lifecycle.v1`, `on_timers` for the
    rewards timer kinds."""

    def __init__(
        self,
        cfg: RewardsConfig,
        *,
        events_topic: str,
        rewards_topic: str,
        clock: Callable[[], datetime],
        metrics: RewardsMetrics | None = None,
    ) -> None:
        self._cfg = cfg
        self._events_topic = events_topic
        self._rewards_topic = rewards_topic
        self._clock = clock
        self._metrics = metrics
        self._cache = StateCache()

    @property
    def cache(self) -> StateCache:
        """The decoded states this process keeps between units of work (shared with the API)."""
        return self._cache

    # -- consumed records ------------------------------------------------------------------------

    def decode(self, record: Record) -> Decoded[ConsumedInput]:
        """An event (input id from the events contract name) or a lifecycle record (from the
        lifecycle contract name); a malformed record is a `PermanentError` (dead letter)."""
        if record.topic == self._events_topic:
            try:
                event = Event.from_bytes(record.value)
            except InvalidEvent as exc:
                raise PermanentError("invalid_event", str(exc)) from exc
            iid = input_id(topics.EVENTS, event.key, event.message_id)
            return Decoded(EventInput(iid, event), iid, event.received_at)
        try:
            parsed = parse_lifecycle(record.value)
        except ContractError as exc:
            raise PermanentError("invalid_lifecycle", str(exc)) from exc
        iid = input_id(topics.LIFECYCLE, parsed.user_id, parsed.id)
        return Decoded(LifecycleInput.from_record(iid, parsed), iid, None)

    async def handle(self, session: AsyncSession, messages: Sequence[Message[ConsumedInput]]) -> None:
        now = self._clock()
        inputs = [m.value for m in messages]
        await self.apply(session, inputs, now)

    async def apply(
        self, session: AsyncSession, inputs: Sequence[ConsumedInput], now: datetime
    ) -> RewardsUnit:
        """Lock, decide and write `inputs` (in order) in `session`'s transaction."""
        users = {inp.user_id for inp in inputs}
        claims = {
            r
            for inp in inputs
            if isinstance(inp, EventInput) and (r := claimed_referrer(inp.event, self._cfg)) is not None
        }
        known = await referrals.referrers_of(session, users) if self._cfg.referrals else {}
        locked = await store.lock_users(
            session, users | claims | set(known.values()), create=True, cache=self._cache
        )
        edges = await referrals.referral_edges(session, claims) if claims else {}
        remaining = await budgets.lock_budgets(session, budget_limits(self._cfg, inputs))
        unit = RewardsUnit.over(
            self._cfg, locked, remaining, self._rewards_topic, edges=edges, cache=self._cache
        )
        for inp in inputs:
            if isinstance(inp, EventInput):
                referrer = claimed_referrer(inp.event, self._cfg)
                if referrer is not None:
                    inp = replace(inp, referrer_chain=unit.chain(referrer))
            unit.apply(inp, now)
        await unit.write(session)
        if self._metrics is not None:
            self._metrics.count_on_commit(session, unit.tally)
        return unit

    # -- timers ----------------------------------------------------------------------------------

    async def on_timers(
        self, session: AsyncSession, due: Sequence[timers.Timer], now: datetime
    ) -> Iterable[timers.Timer]:
        mine = [(t, domain_timer(t)) for t in due]
        locked = await store.lock_users(
            session, {d.user_id for _, d in mine}, skip_locked=True, cache=self._cache
        )
        handled: list[timers.Timer] = []
        fire: list[TimerInput] = []
        for row, t in sorted(mine, key=lambda pair: pair[1]):
            if t.user_id in locked.busy:
                continue  # the user's row is busy in an event batch: offered again shortly
            handled.append(row)
            if t.user_id in locked.missing or locked.states.get(t.user_id) is None:
                log.warning("rewards timer dropped: its user is gone", kind=row.kind, due_at=str(row.due_at))
            else:
                fire.append(TimerInput(t))
        unit = RewardsUnit.over(self._cfg, locked, {}, self._rewards_topic, cache=self._cache)
        for inp in fire:
            unit.apply(inp, now)
        await unit.write(session)
        if self._metrics is not None:
            self._metrics.count_on_commit(session, unit.tally, ("expired",) * len(unit.expired_holds))
        return handled
