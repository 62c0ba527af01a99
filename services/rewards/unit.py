"""One unit of work of the rewards service: decide inputs over locked users, then write it all.

Every write path (an event batch, a timer batch, a redemption or an adjustment) locks its users
(`store.lock_users`) and the budgets it may draw on (`store.lock_budgets`), then feeds its inputs
in order to `RewardsUnit.apply`, which calls the domain's one `decide` (and
`apply_foreign_award` for the referrer's side of a referral, on the referrer's locked state),
and finally `write`s, in the same transaction: states and balances, ledger transactions and
entries, lots, budget spend, referrals, the typed `userops.rewards.v1` records into the outbox,
and the timers the decisions armed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.adapters import budgets, referrals, requests, store
from services.rewards.adapters.state_cache import StateCache
from services.rewards.adapters.store import LockedUsers, TransactionRow
from services.rewards.config import RewardsConfig
from services.rewards.domain.awards import Decision
from services.rewards.domain.decide import apply_foreign_award, decide
from services.rewards.domain.inputs import AdjustmentInput, RewardsInput, TimerInput, TimerKind
from services.rewards.domain.inputs import Timer as DomainTimer
from services.rewards.domain.ledger import Lot, TxKind
from services.rewards.domain.outputs import BadgeEarned, Output, PointsRedeemed, PointsReversed
from services.rewards.domain.state import UserRewardsState
from services.rewards.wire import to_wire
from shared.ids import output_id
from shared.runtime import outbox, timers

_ON_COMMIT: Final = "services.rewards.unit.on_commit"


def on_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback` once `session`'s current transaction commits (never if it rolls back)."""
    pending: list[Callable[[], None]] | None = session.info.get(_ON_COMMIT)
    if pending is None:
        pending = session.info[_ON_COMMIT] = []
        sync = session.sync_session

        def committed(*_: Any) -> None:
            callbacks = list(session.info.get(_ON_COMMIT, []))
            session.info[_ON_COMMIT] = []
            for fn in callbacks:
                fn()

        def rolled_back(*_: Any) -> None:
            session.info[_ON_COMMIT] = []

        event.listen(sync, "after_commit", committed)
        event.listen(sync, "after_soft_rollback", rolled_back)
    session.info[_ON_COMMIT].append(callback)


TIMER_KINDS = tuple(f"rewards.{kind.value}" for kind in TimerKind)
"""The runtime timer kinds of the rewards service, one per domain timer kind."""


class UnlockedUser(RuntimeError):
    """A decision touched a user the unit had not locked (a bug in the caller's lock set)."""


def runtime_timer(t: DomainTimer) -> timers.Timer:
    """The durable timer row of a domain timer; the payload names the user and the domain key."""
    return timers.Timer(
        f"rewards.{t.kind.value}", f"{t.user_id}:{t.key}", t.due_at, {"user": t.user_id, "key": t.key}
    )


def domain_timer(t: timers.Timer) -> DomainTimer:
    return DomainTimer(
        t.due_at, str(t.payload["user"]), TimerKind(t.kind.removeprefix("rewards.")), str(t.payload["key"])
    )


def _lot_key(lot: Lot) -> tuple[int, bool, int, int, bool]:
    return (lot.remaining, lot.pending, lot.reversed, lot.expired_amount, lot.expired)


@dataclass(slots=True)
class Tally:
    """What a unit did, for the business metrics (counted once its transaction commits)."""

    outputs: list[Output] = field(default_factory=list)
    redeemed: list[tuple[str, int]] = field(default_factory=list)  # (rule of the spent lot, points)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (rule, reason)


class RewardsUnit:
    """Decisions over `states` (every user the unit may touch, locked) and `budgets` (remaining
    points of the locked budgets), collected for one `write`."""

    def __init__(
        self,
        cfg: RewardsConfig,
        states: dict[str, UserRewardsState | None],
        budgets: Mapping[str, int],
        topic: str,
        *,
        created: set[str] | None = None,
        edges: Mapping[str, str] | None = None,
        versions: Mapping[str, int] | None = None,
        cache: StateCache | None = None,
    ) -> None:
        self.cfg = cfg
        self.versions = dict(versions or {})
        self.cache = cache
        self.states = states
        self.budgets = dict(budgets)
        self.topic = topic
        self.created = created or set()
        self.edges = dict(edges or {})
        """referee → referrer, from the store plus the claims this unit accepted."""
        self.touched: set[str] = set()
        self.consumed: dict[str, int] = {}
        self.tally = Tally()
        self._lots_before: dict[str, dict[str, tuple[int, bool, int, int, bool]]] = {}
        self._tx: list[TransactionRow] = []
        self._outbox: list[outbox.OutboxMessage] = []
        self._timers: dict[tuple[str, str], timers.Timer] = {}
        self._referrals: list[tuple[str, str, datetime, str]] = []
        self.expired_holds: list[str] = []

    def chain(self, referrer: str, limit: int = 64) -> tuple[str, ...]:
        """The referrer's own referrers, nearest first (for the domain's cycle check)."""
        out: list[str] = []
        user = self.edges.get(referrer)
        while user is not None and len(out) < limit and user not in out:
            out.append(user)
            user = self.edges.get(user)
        return tuple(out)

    def _state(self, user_id: str) -> UserRewardsState | None:
        if user_id not in self.states:
            raise UnlockedUser(user_id)
        state = self.states[user_id]
        if user_id not in self._lots_before:
            lots = state.book.lots.values() if state is not None else ()
            self._lots_before[user_id] = {lot.id: _lot_key(lot) for lot in lots}
        return state

    def apply(self, inp: RewardsInput, now: datetime) -> Decision:
        """Decide one input (and the foreign awards it owes) and collect its effects."""
        had_referrer = (s := self._state(inp.user_id)) is not None and s.referral.referrer is not None
        decision = decide(self._state(inp.user_id), inp, self.cfg, now, self.budgets)
        reason = actor = None
        if isinstance(inp, AdjustmentInput):
            reason, actor = inp.reason, inp.actor
        self._absorb(decision, inp.input_id, reason, actor)
        referral = decision.state.referral
        if not had_referrer and referral.referrer is not None and referral.claimed_at is not None:
            self.edges[inp.user_id] = referral.referrer
            self._referrals.append((inp.user_id, referral.referrer, referral.claimed_at, inp.input_id))
        for award in decision.foreign:
            self._absorb(apply_foreign_award(self._state(award.user_id), award, self.cfg), inp.input_id)
        if isinstance(inp, TimerInput) and inp.timer.kind is TimerKind.HOLD_EXPIRY and decision.transactions:
            self.expired_holds.append(inp.timer.key)
        return decision

    def _absorb(self, d: Decision, source: str, reason: str | None = None, actor: str | None = None) -> None:
        user = d.state.user_id
        self.states[user] = d.state
        self.touched.add(user)
        for rule_id, n in d.budget_consumed.items():
            self.budgets[rule_id] = self.budgets.get(rule_id, 0) - n
            self.consumed[rule_id] = self.consumed.get(rule_id, 0) + n
        keys: dict[str, str] = {}
        reasons: dict[str, str] = {}
        for out in d.outputs:
            if isinstance(out, BadgeEarned) and out.points:
                key = f"badge:{out.badge}:{out.times}"
                keys[output_id(source, key)] = key
            elif isinstance(out, PointsReversed):
                reasons[out.id] = out.reason
            elif isinstance(out, PointsRedeemed):
                hold = d.state.book.holds.get(out.redemption_id)
                for lot_id, n in hold.allocations if hold else ():
                    lot = d.state.book.lots.get(lot_id)
                    self.tally.redeemed.append((lot.rule_id if lot else "unknown", n))
            self._outbox.append(
                outbox.OutboxMessage(id=out.id, topic=self.topic, key=out.user_id, value=to_wire(out))
            )
        self.tally.outputs += d.outputs
        self.tally.skipped += [(s.rule_id, s.reason) for s in d.skipped]
        for tx in d.transactions:
            award_key = (keys.get(tx.id) or tx.rule_id) if tx.kind is TxKind.AWARD else None
            self._tx.append(
                TransactionRow(
                    id=tx.id,
                    user_id=tx.user_id,
                    kind=tx.kind.value,
                    at=tx.at,
                    rule_id=tx.rule_id,
                    lot_id=tx.lot_id,
                    reverses=tx.reverses,
                    source_id=source,
                    award_key=award_key,
                    reason=reasons.get(tx.id, reason),
                    actor=actor,
                    entries=tuple((e.account.kind.value, e.account.owner, e.amount) for e in tx.entries),
                )
            )
        for t in d.timers:
            row = runtime_timer(t)
            self._timers[(row.kind, row.key)] = row

    def _changed_lots(self) -> list[tuple[str, Lot]]:
        out: list[tuple[str, Lot]] = []
        for user in sorted(self.touched):
            state = self.states.get(user)
            if state is None:
                continue
            before = self._lots_before.get(user, {})
            out += [(user, lot) for lot in state.book.lots.values() if before.get(lot.id) != _lot_key(lot)]
        return out

    async def write(self, session: AsyncSession) -> None:
        """Write every collected effect in `session`'s transaction (the caller commits)."""
        states = [s for u in sorted(self.touched) if (s := self.states.get(u)) is not None]
        await store.save_accounts(session, states, self.cfg.tier_names())
        await store.drop_placeholders(session, self.created - self.touched)
        await store.add_transactions(session, self._tx)
        await store.upsert_lots(session, self._changed_lots())
        await budgets.spend_budgets(session, self.consumed)
        await referrals.add_referrals(session, self._referrals)
        await requests.mark_holds_expired(session, self.expired_holds)
        await outbox.add(session, self._outbox)
        await timers.schedule(session, list(self._timers.values()))
        if self.cache is not None:
            cache, kept = (
                self.cache,
                [
                    (u, self.versions.get(u, 0) + (u in self.touched), s)
                    for u, s in self.states.items()
                    if s is not None and u in self.versions
                ],
            )
            on_commit(session, lambda: cache.put(kept))

    @classmethod
    def over(
        cls,
        cfg: RewardsConfig,
        locked: LockedUsers,
        budgets: Mapping[str, int],
        topic: str,
        *,
        edges: Mapping[str, str] | None = None,
        cache: StateCache | None = None,
    ) -> RewardsUnit:
        """A unit over the users of `lock_users` (with their versions, for the cache)."""
        return cls(
            cfg,
            locked.states,
            budgets,
            topic,
            created=locked.created,
            edges=edges,
            versions=locked.versions,
            cache=cache,
        )
