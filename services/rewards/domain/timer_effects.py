"""What a due timer does to a user's rewards state (the tier review is `decide`'s catch-up)."""

from __future__ import annotations

from services.rewards.domain.awards import Step
from services.rewards.domain.inputs import Timer, TimerKind
from services.rewards.domain.outputs import PointsExpired, PointsExpiringSoon


def apply_timer(step: Step, timer: Timer) -> None:
    """Do what a due timer asks: expire a lot, warn of an expiry, release pending points, or
    release an expired hold. A timer whose object is gone or already handled does nothing.
    (Tier reviews need nothing here: `decide` catches tiers up to every input's instant.)"""
    book, cfg, at, d = step.state.book, step.cfg, timer.due_at, step.decision
    user = step.state.user_id
    if timer.kind is TimerKind.LOT_EXPIRY:
        tx = book.expire(timer.key, step.id("expire"), at)
        if tx is not None:
            d.transactions.append(tx)
            points = -sum(e.amount for e in tx.entries if e.amount < 0)
            d.outputs.append(
                PointsExpired(
                    id=tx.id,
                    user_id=user,
                    at=at,
                    config_version=cfg.version,
                    rule_id=tx.rule_id or "",
                    lot_id=timer.key,
                    points=points,
                    balance=book.balances.available,
                    source_id=step.input_id,
                )
            )
    elif timer.kind is TimerKind.EXPIRY_WARNING:
        lot = book.lots.get(timer.key)
        if lot is not None and not lot.expired and lot.remaining > 0 and lot.expires_at is not None:
            d.outputs.append(
                PointsExpiringSoon(
                    id=step.id("expiring_soon"),
                    user_id=user,
                    at=at,
                    config_version=cfg.version,
                    lot_id=lot.id,
                    points=lot.remaining,
                    expires_at=lot.expires_at,
                    source_id=step.input_id,
                )
            )
    elif timer.kind is TimerKind.PENDING_RELEASE:
        d.transactions += book.release_pending(timer.key, step.id("release_pending"), at)
    elif timer.kind is TimerKind.HOLD_EXPIRY:
        tx = book.release(timer.key, step.id("release"), at)
        if tx is not None:
            d.transactions.append(tx)
