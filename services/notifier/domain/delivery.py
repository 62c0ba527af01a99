"""The `userops.deliveries.v1` record of a send outcome (`shared.contracts.deliveries`).

The contract has five outcomes; the domain's sixth, `cancelled` (stale, campaign disabled, or the
conditions no longer hold at send time), is published as `suppressed` with its reason kept
(`conditions_no_longer_hold`, `expired`, `campaign_disabled`, `variant_removed`), as the contract
lists "audience re-check failed" under `suppressed`. A holdout entry is `suppressed` with
`holdout: true` and no variant. Record ids are `output_id(send_key, "delivery:<outcome>")`, and
for a deferral also its `until`, so a replay or redelivery writes the same ids.
"""

from __future__ import annotations

from typing import Final

from services.notifier.domain.assignment import HOLDOUT
from services.notifier.domain.sends import OutcomeKind, SendOutcome
from shared.contracts.deliveries import DeliveryOutcome, Outcome
from shared.ids import output_id

_PUBLISHED: Final[dict[OutcomeKind, Outcome]] = {
    "sent": "sent",
    "capped": "capped",
    "suppressed": "suppressed",
    "deferred": "deferred",
    "cancelled": "suppressed",
    "failed": "failed",
}


def delivery_record(outcome: SendOutcome, config_version: str, attempts: int = 0) -> DeliveryOutcome:
    """The record to write to the outbox for `outcome` (`attempts`: channel attempts made)."""
    rule = f"delivery:{outcome.kind}"
    if outcome.kind == "deferred" and outcome.until is not None:
        rule += f":{outcome.until.isoformat(timespec='microseconds')}"
    holdout = outcome.variant == HOLDOUT
    return DeliveryOutcome(
        id=output_id(outcome.send_key, rule),
        user_id=outcome.user_id,
        at=outcome.at,
        config_version=config_version,
        outcome=_PUBLISHED[outcome.kind],
        campaign=outcome.campaign,
        channel=outcome.channel,
        send_key=outcome.send_key,
        variant=None if holdout or not outcome.variant else outcome.variant,
        holdout=holdout,
        trigger_id=outcome.trigger_id,
        reason=outcome.reason,
        deferred_until=outcome.until if outcome.kind == "deferred" else None,
        attempts=attempts,
    )
