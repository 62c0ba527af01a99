"""The ledger-facing steps every input shares: award points, reverse an award, move tiers.

`Decision` collects what one input did; `Step` is one decision in progress (state, config,
input id, budgets) with the operations that append transactions, lots, outputs and timers to it.
Ids: an award's lot, transaction and `points_awarded` event share `output_id(input_id, rule)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from services.rewards.config import RewardsConfig
from services.rewards.domain.inputs import Timer, TimerInput, TimerKind
from services.rewards.domain.ledger import Lot, Transaction
from services.rewards.domain.outputs import Output, PointsAwarded, PointsReversed, TierChanged
from services.rewards.domain.referrals import ForeignAward
from services.rewards.domain.rules import Skipped
from services.rewards.domain.state import EarnedPoints, UserRewardsState
from services.rewards.domain.tiers import TierMove, catch_up, on_earned
from shared.ids import output_id


class MissingBudget(KeyError):
    """A budgeted rule matched but the caller did not pass its remaining budget."""


@dataclass(slots=True)
class Decision:
    """What one input did. The adapter, in one transaction: stores `state`, appends
    `transactions` (the ledger) and `lots`, writes `outputs` to the outbox, upserts `timers`,
    subtracts `budget_consumed[rule]` from each rule budget's remaining amount (negative: a
    reversal gave points back), and applies each `foreign` award to its user's state
    (`apply_foreign_award`). `refused` is set when a redemption command was refused
    (`insufficient_balance` → HTTP 409, `hold_not_open`); `hold_id` names a reserve's hold."""

    state: UserRewardsState
    transactions: list[Transaction] = field(default_factory=list)
    lots: list[Lot] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    budget_consumed: dict[str, int] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    foreign: list[ForeignAward] = field(default_factory=list)
    refused: str | None = None
    hold_id: str | None = None


@dataclass(slots=True)
class Step:
    """One decision in progress."""

    state: UserRewardsState
    cfg: RewardsConfig
    input_id: str
    budgets: Mapping[str, int]
    decision: Decision

    def id(self, rule: str) -> str:
        return output_id(self.input_id, rule)

    def budget_left(self, rule_id: str) -> int:
        if rule_id not in self.budgets:
            raise MissingBudget(rule_id)
        return self.budgets[rule_id] - self.decision.budget_consumed.get(rule_id, 0)

    def consume_budget(self, rule_id: str, points: int) -> None:
        self.decision.budget_consumed[rule_id] = self.decision.budget_consumed.get(rule_id, 0) + points

    def tier_multiplier(self) -> Decimal:
        tiers = self.cfg.tiers
        return tiers.levels[self.state.tier.level].multiplier if tiers else Decimal(1)

    def award(
        self,
        rule_id: str,
        points: int,
        at: datetime,
        *,
        award_id: str | None = None,
        pending_for: timedelta | None = None,
        reference: str | None = None,
        expires_after: timedelta | None = None,
        counts_for_tier: bool = True,
    ) -> Lot | None:
        """Book `points` for `rule_id` as a new lot; None if this award was already booked."""
        lot_id = award_id or self.id(rule_id)
        book = self.state.book
        if lot_id in book.lots or points <= 0:
            return None
        after = expires_after or self.cfg.expiry.after
        expires_at = at + after if after is not None else None
        lot = Lot(lot_id, rule_id, points, points, at, expires_at, pending_for is not None, reference)
        d = self.decision
        d.transactions += book.credit(lot, at)
        d.lots.append(lot)
        available_at = at + pending_for if pending_for is not None else None
        d.outputs.append(
            PointsAwarded(
                id=lot_id,
                user_id=self.state.user_id,
                at=at,
                config_version=self.cfg.version,
                rule_id=rule_id,
                points=points,
                lot_id=lot_id,
                pending=pending_for is not None,
                expires_at=expires_at,
                available_at=available_at,
                balance=book.balances.available,
                source_id=self.input_id,
            )
        )
        user = self.state.user_id
        if expires_at is not None:
            d.timers.append(Timer(expires_at, user, TimerKind.LOT_EXPIRY, lot_id))
            warn = self.cfg.expiry.warn_before
            if warn is not None and expires_at - warn > at:
                d.timers.append(Timer(expires_at - warn, user, TimerKind.EXPIRY_WARNING, lot_id))
        if available_at is not None:
            d.timers.append(Timer(available_at, user, TimerKind.PENDING_RELEASE, lot_id))
        if counts_for_tier and self.cfg.tiers is not None:
            self.state.earned.append(EarnedPoints(at, points, lot_id))
            move = on_earned(self.state.tier, self.state.earned, at, self.cfg.tiers)
            if move is not None:
                self.tier_changed(move, self.input_id)
        return lot

    def reverse(self, lot: Lot, at: datetime, reason: str, amount: int | None = None) -> bool:
        """Take back `amount` (default: what is left) of an award, linked to it; the shortfall is
        recorded as debt. False if nothing was left to take back."""
        rule = self.cfg.rule(lot.rule_id)
        tx_id = self.id(f"reverse:{lot.id}")
        result = self.state.book.reverse(lot.id, tx_id, at, amount)
        if result.transaction is None:
            return False
        points = result.taken + result.shortfall
        self.decision.transactions.append(result.transaction)
        self.decision.outputs.append(
            PointsReversed(
                id=tx_id,
                user_id=self.state.user_id,
                at=at,
                config_version=self.cfg.version,
                rule_id=lot.rule_id,
                reverses=lot.id,
                points=points,
                shortfall=result.shortfall,
                reason=reason,
                balance=self.state.book.balances.available,
                source_id=self.input_id,
            )
        )
        if rule is not None and rule.budget is not None:
            self.consume_budget(rule.id, -points)
        # Only an award that counted towards tiers (it is in the earned history) is taken back
        # from it: reversing an adjustment credit, which never counted, must not lower the tier.
        if self.cfg.tiers is not None and any(e.award_id == lot.id for e in self.state.earned):
            self.state.earned.append(EarnedPoints(at, -points, lot.id))
        return True

    def catch_up_tiers(self, until: datetime) -> None:
        """Apply tier reviews due by `until`; each move's id derives from its review's timer."""
        tiers = self.cfg.tiers
        if tiers is None:
            return
        for move in catch_up(self.state.tier, self.state.earned, until, tiers):
            review = Timer(move.at, self.state.user_id, TimerKind.TIER_REVIEW, self.state.user_id)
            self.tier_changed(move, TimerInput(review).input_id)

    def tier_changed(self, move: TierMove, input_id: str) -> None:
        assert self.cfg.tiers is not None
        names = [level.name for level in self.cfg.tiers.levels]
        before, after = names[move.from_level], names[move.to_level]
        self.decision.outputs.append(
            TierChanged(
                id=output_id(input_id, f"tier:{before}->{after}"),
                user_id=self.state.user_id,
                at=move.at,
                config_version=self.cfg.version,
                from_tier=before,
                to_tier=after,
                reason=move.reason,
                period_end=move.period_end,
                earned_in_window=move.earned,
                source_id=input_id,
            )
        )
