"""Redemption commands: reserve points, then confirm or release the hold.

The hold's id derives from the command's input id (the API's Idempotency-Key): a repeated
reserve returns the same hold (its status is `state.book.holds[hold_id].status`), for a day after
it finished; the same key with a different amount is refused (`idempotency_conflict`, HTTP 422).
Holds are released automatically `holds.ttl` after they were made (a `hold_expiry` timer).
Refusals (`Decision.refused`): `invalid_amount`, `insufficient_balance` (HTTP 409),
`idempotency_conflict`, `hold_not_open`, `hold_expired`.
"""

from __future__ import annotations

from datetime import datetime

from services.rewards.domain.awards import Step
from services.rewards.domain.book import InsufficientBalance
from services.rewards.domain.inputs import RedemptionInput, Timer, TimerKind
from services.rewards.domain.outputs import PointsRedeemed


def apply_command(step: Step, cmd: RedemptionInput, at: datetime) -> None:
    """Reserve points (refused with `insufficient_balance` when fewer are available), or
    confirm / release an open hold. A hold whose time is up is released, not confirmed
    (`hold_expired`); a hold not open is refused (`hold_not_open`)."""
    book, d = step.state.book, step.decision
    if cmd.action == "reserve":
        hold_id = step.id("hold")
        d.hold_id = hold_id
        existing = book.holds.get(hold_id)
        if existing is not None:
            d.refused = None if existing.amount == cmd.amount else "idempotency_conflict"
            return
        if cmd.amount <= 0:
            d.refused = "invalid_amount"
            return
        try:
            d.transactions.append(book.hold(hold_id, cmd.amount, at, at + step.cfg.holds.ttl))
        except InsufficientBalance:
            d.refused = "insufficient_balance"
            return
        d.timers.append(Timer(at + step.cfg.holds.ttl, step.state.user_id, TimerKind.HOLD_EXPIRY, hold_id))
        return
    hold_id = cmd.hold_id or ""
    d.hold_id = hold_id
    hold = book.holds.get(hold_id)
    if hold is None or hold.status != "held":
        d.refused = "hold_not_open"
        return
    if cmd.action == "release" or at >= hold.expires_at:
        tx = book.release(hold_id, step.id("release"), at)
        d.refused = None if cmd.action == "release" else "hold_expired"
    else:
        tx = book.confirm(hold_id, step.id("confirm"), at)
        if tx is not None:
            d.outputs.append(
                PointsRedeemed(
                    id=tx.id,
                    user_id=step.state.user_id,
                    at=at,
                    config_version=step.cfg.version,
                    redemption_id=hold_id,
                    points=hold.amount,
                    balance=book.balances.available,
                    source_id=step.input_id,
                )
            )
    if tx is not None:
        d.transactions.append(tx)
