"""What the decide functions hand to the service: planned sends, their outcomes, campaign
entries and goal conversions. Plain frozen records with no behaviour, stored by the adapters.

A planned send's `send_key` is `shared.ids.output_id(input_id, f"{campaign}:{channel}")`: the same
for every redelivery or replay of the triggering input, so each message happens at most once
(the key is the primary key of the scheduled send and the idempotency key of the delivery job,
sent as `webhook-id` / `Message-ID`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from services.notifier.domain.templates import RenderedMessage
from shared.contracts.deliveries import Channel
from shared.ids import output_id

OutcomeKind = Literal["sent", "capped", "suppressed", "deferred", "cancelled", "failed"]
OUTCOME_KINDS: Final[tuple[OutcomeKind, ...]] = (
    "sent",
    "capped",
    "suppressed",
    "deferred",
    "cancelled",
    "failed",
)


def send_key(input_id: str, campaign: str, channel: str) -> str:
    """The deterministic key of the message `campaign` sends on `channel` for input `input_id`."""
    return output_id(input_id, f"{campaign}:{channel}")


@dataclass(frozen=True, slots=True)
class PlannedSend:
    """A message to re-check and send at `due_at` (then as late as `expires_at`).

    `variant` is the variant the user was assigned; `expiring_points`/`expiring_at` are set by a
    points-expiring trigger (the points and the earliest expiry it reminds about).
    """

    send_key: str
    campaign: str
    channel: Channel
    topic: str
    user_id: str
    input_id: str
    variant: str
    trigger_at: datetime
    due_at: datetime
    expires_at: datetime
    expiring_points: int | None = None
    expiring_at: datetime | None = None
    config_version: str = "dev"
    """The version of the config that planned it (stamped on the delivery event)."""


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What became of a (planned) send of `campaign` to `user_id`, triggered by `trigger_id`, at `at`.

    - `sent`: `message` is rendered and goes out now (the caller enqueues the delivery job);
    - `capped`: a frequency cap refused it (`reason` names the cap); final;
    - `suppressed`: held out (`holdout`, at trigger time), churned too long, unsubscribed, or no
      address (`reason`); final;
    - `deferred`: quiet hours; re-check again at `until`;
    - `cancelled`: stale, campaign disabled, or its conditions no longer hold (`reason`); final;
    - `failed`: the template could not be rendered (`reason`); final, listed for operators.
    """

    kind: OutcomeKind
    send_key: str
    campaign: str
    variant: str
    channel: Channel
    user_id: str
    trigger_id: str
    at: datetime
    reason: str = ""
    until: datetime | None = None
    message: RenderedMessage | None = None

    @property
    def final(self) -> bool:
        return self.kind != "deferred"


@dataclass(frozen=True, slots=True)
class EntryRecord:
    """A user entered a campaign in `group` (a variant, or `holdout`) at `at`; the goal window
    closes at `goal_until` (None: the campaign has no goal)."""

    campaign: str
    user_id: str
    group: str
    at: datetime
    input_id: str
    goal_until: datetime | None


@dataclass(frozen=True, slots=True)
class Conversion:
    """The entry of `user_id` into `campaign` (at `entered_at`, in `group`) reached its goal at `at`."""

    campaign: str
    user_id: str
    group: str
    entered_at: datetime
    at: datetime
    input_id: str
