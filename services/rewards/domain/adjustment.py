"""Manual adjustments: an operator credits points, or takes back part of an earlier award.

A credit is an award of the built-in `adjustment` rule (its own lot, expiring like any award;
it does not count towards tiers). A debit is a linked reversal of the award it names: it takes
back at most what is left of that award, from the lot first, then from the user's other
available points, and records the rest as debt (`book.PointsBook.reverse`), so balances never
go negative and nothing is forgiven silently.
Refusals (`Decision.refused`): `invalid_amount` (zero, or a debit naming no award),
`unknown_award` (the named award is not the user's, or is gone), `nothing_to_reverse`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from services.rewards.domain.awards import Step
from services.rewards.domain.inputs import AdjustmentInput

ADJUSTMENT_RULE: Final = "adjustment"


def apply_adjustment(step: Step, cmd: AdjustmentInput, at: datetime) -> None:
    d = step.decision
    if cmd.points > 0:
        lot = step.award(ADJUSTMENT_RULE, cmd.points, at, counts_for_tier=False)
        d.hold_id = lot.id if lot is not None else step.id(ADJUSTMENT_RULE)
        return
    if cmd.points == 0 or cmd.reverses is None:
        d.refused = "invalid_amount"
        return
    lot = step.state.book.lots.get(cmd.reverses)
    if lot is None:
        d.refused = "unknown_award"
        return
    d.hold_id = step.id(f"reverse:{lot.id}")
    if d.hold_id in lot.reversals:
        return  # this very adjustment was applied before: nothing more to take back
    if not step.reverse(lot, at, cmd.reason, -cmd.points):
        d.refused = "nothing_to_reverse"
