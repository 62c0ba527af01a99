"""`userops.deliveries.v1`: what became of each planned send (DESIGN.md §6).

Produced by the notifier (key = `userId`), one record per outcome of a send, for reporting and
uplift. `sendKey` is the send's deterministic key (campaign, trigger event, user, channel), the
same idempotency key the channel receives; `id` is `output_id(sendKey-derived input, outcome)`.

- `outcome`: `sent` (handed to the channel), `capped` (frequency cap), `suppressed` (holdout,
  unsubscribed, churned too long, audience re-check failed), `deferred` (quiet hours; then
  `deferredUntil` says until when), `failed` (gave up; `reason` says why);
- `campaign`, `channel` (`webhook`, `email`, `inapp`), optional `variant`, `holdout`,
  `triggerId` (the input id that triggered the campaign), `attempts` (channel attempts made).
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import TypeAdapter, model_validator

from shared import topics
from shared.contracts.base import ContractModel, Count, Instant, NonEmpty, parse

Outcome = Literal["sent", "capped", "suppressed", "deferred", "failed"]
Channel = Literal["webhook", "email", "inapp"]


class DeliveryOutcome(ContractModel):
    """One outcome of one send."""

    type: Literal["delivery"] = "delivery"
    outcome: Outcome
    campaign: NonEmpty
    channel: Channel
    send_key: NonEmpty
    variant: NonEmpty | None = None
    holdout: bool = False
    trigger_id: NonEmpty | None = None
    reason: str = ""
    deferred_until: Instant | None = None
    attempts: Count = 0

    @model_validator(mode="after")
    def _consistent(self) -> DeliveryOutcome:
        if (self.outcome == "deferred") != (self.deferred_until is not None):
            raise ValueError("deferredUntil is set exactly when the outcome is deferred")
        if self.outcome in ("capped", "suppressed", "failed") and not self.reason:
            raise ValueError(f"a {self.outcome} delivery needs a reason")
        return self


_ADAPTER: Final[TypeAdapter[DeliveryOutcome]] = TypeAdapter(DeliveryOutcome)


def parse_delivery(data: bytes | str | dict[str, Any]) -> DeliveryOutcome:
    """One `userops.deliveries.v1` record, or `ContractError` naming what is wrong."""
    return parse(_ADAPTER, topics.DELIVERIES, data)
