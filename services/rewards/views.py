"""What the rewards API shows: response models, a user's rewards summary, readable statement lines.

Pure: built from a user's state, a statement row and the config; no I/O.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Final

from pydantic import BaseModel, Field

from services.rewards.adapters.reads import StatementRow
from services.rewards.config import RewardsConfig
from services.rewards.domain.state import UserRewardsState
from services.rewards.domain.tiers import earned_in_window

EXPIRING_SHOWN: Final = 20


class Balance(BaseModel):
    available: int = Field(description="Spendable points.")
    pending: int = Field(description="Awarded, not yet spendable (pending period).")
    held: int = Field(description="Reserved by open redemptions.")
    owed: int = Field(description="Points owed after a reversal found them already spent.")


class Tier(BaseModel):
    name: str | None
    period_end: datetime | None = Field(serialization_alias="periodEnd")
    earned_in_window: int = Field(serialization_alias="earnedInWindow")


class Streak(BaseModel):
    days: int
    last_date: date | None = Field(serialization_alias="lastDate")
    longest: int
    freezes_used: int = Field(serialization_alias="freezesUsed")


class ExpiringLot(BaseModel):
    lot_id: str = Field(serialization_alias="lotId")
    rule_id: str = Field(serialization_alias="ruleId")
    points: int
    pending: bool
    expires_at: datetime = Field(serialization_alias="expiresAt")


class UserRewards(BaseModel):
    user_id: str = Field(serialization_alias="userId")
    balance: Balance
    tier: Tier
    badges: dict[str, int] = Field(description="Badge id → times earned.")
    streak: Streak
    expiring: list[ExpiringLot] = Field(description="Unspent lots by expiry, soonest first.")
    referred_by: str | None = Field(serialization_alias="referredBy")


class StatementLine(BaseModel):
    id: str
    at: datetime
    kind: str
    rule_id: str | None = Field(serialization_alias="ruleId")
    description: str
    available: int = Field(description="Change of the available balance.")
    pending: int
    held: int
    reverses: str | None = None
    actor: str | None = None


class Statement(BaseModel):
    user_id: str = Field(serialization_alias="userId")
    lines: list[StatementLine]
    next_cursor: str | None = Field(serialization_alias="nextCursor")


class RedemptionRequest(BaseModel):
    # strict: JSON `true` or "5" is not an amount (lax mode read `true` as 1 point)
    points: int = Field(gt=0, le=1_000_000_000, strict=True, description="Points to reserve.")
    reference: str | None = Field(
        default=None, max_length=200, description="The caller's order or reward id."
    )


class Redemption(BaseModel):
    redemption_id: str = Field(serialization_alias="redemptionId", description="The Idempotency-Key.")
    hold_id: str = Field(serialization_alias="holdId")
    state: str = Field(description="held, confirmed, released or expired.")
    points: int
    expires_at: datetime | None = Field(serialization_alias="expiresAt")
    balance: Balance


class AdjustmentRequest(BaseModel):
    points: int = Field(
        ge=-1_000_000_000, le=1_000_000_000, strict=True, description="Non-zero; negative needs `reverses`."
    )
    reason: str = Field(min_length=1, max_length=500)
    actor: str = Field(min_length=1, max_length=200, description="Who made the adjustment.")
    reverses: str | None = Field(
        default=None, max_length=200, description="The award (lot id) a debit corrects."
    )


class Adjustment(BaseModel):
    transaction_id: str = Field(serialization_alias="transactionId")
    points: int
    balance: Balance


class BudgetStatus(BaseModel):
    rule_id: str = Field(serialization_alias="ruleId")
    limit: int
    spent: int
    remaining: int
    overflow: str


class ErrorBody(BaseModel):
    code: str
    message: str


def balance(state: UserRewardsState) -> Balance:
    b = state.book.balances
    return Balance(available=b.available, pending=b.pending, held=b.held, owed=-b.debt)


def user_rewards(state: UserRewardsState, cfg: RewardsConfig, now: datetime) -> UserRewards:
    tiers = cfg.tiers
    lots = sorted(
        (
            x
            for x in state.book.lots.values()
            if x.remaining > 0 and not x.expired and x.expires_at is not None
        ),
        key=lambda x: (x.expires_at, x.id),
    )
    return UserRewards(
        user_id=state.user_id,
        balance=balance(state),
        tier=Tier(
            name=tiers.levels[state.tier.level].name if tiers else None,
            period_end=state.tier.period_end,
            earned_in_window=earned_in_window(state.earned, now, tiers) if tiers else 0,
        ),
        badges=dict(state.badges),
        streak=Streak(
            days=state.streak.length,
            last_date=state.streak.last_date,
            longest=state.streak.longest,
            freezes_used=state.streak.freezes_used,
        ),
        expiring=[
            ExpiringLot(
                lot_id=x.id, rule_id=x.rule_id, points=x.remaining, pending=x.pending, expires_at=x.expires_at
            )
            for x in lots[:EXPIRING_SHOWN]
            if x.expires_at is not None
        ],
        referred_by=state.referral.referrer,
    )


def _rule_words(rule_id: str | None, cfg: RewardsConfig) -> str:
    if rule_id is None:
        return ""
    rule = cfg.rule(rule_id)
    if rule is not None and rule.description:
        return rule.description
    if rule_id.startswith("badge:"):
        return f"badge {rule_id.removeprefix('badge:')}"
    if rule_id.startswith("referral:"):
        return f"referral ({rule_id.removeprefix('referral:')})"
    return rule_id.replace("_", " ")


def describe(row: StatementRow, cfg: RewardsConfig) -> str:
    """A statement line in words, e.g. "Earned 10 points: lesson completed"."""
    rule = _rule_words(row.rule_id, cfg)
    moved = row.available + row.pending
    if row.kind == "award":
        base = f"Earned {moved} points: {rule}" + (" (pending)" if row.pending > 0 else "")
        if row.rule_id == "adjustment":
            base = f"Adjustment by {row.actor}: {row.reason}" if row.actor else base
        return base
    if row.kind == "reversal":
        by = f" by {row.actor}" if row.actor else ""
        return f"Reversed{by}: {rule} ({row.reason or 'correction'})"
    words = {
        "release_pending": f"Pending points became available: {rule}",
        "expiry": f"Points expired: {rule}",
        "hold": "Reserved for a redemption",
        "confirm": "Redeemed",
        "release": "Reservation released",
        "debt_repayment": "Repaid points owed",
    }
    return words.get(row.kind, row.kind)


def statement_line(row: StatementRow, cfg: RewardsConfig) -> StatementLine:
    return StatementLine(
        id=row.id,
        at=row.at,
        kind=row.kind,
        rule_id=row.rule_id,
        description=describe(row, cfg),
        available=row.available,
        pending=row.pending,
        held=row.held,
        reverses=row.reverses,
        actor=row.actor,
    )
