"""Business metrics of the notifier, defined once and registered on the service's registry.

Labels are bounded: `campaign` is a campaign name from config/notifier.yaml, `channel` one of
webhook/email/inapp, `outcome` one of the five published outcomes. No user ids.

- `userops_notifier_messages_total` (counter; campaign, channel, outcome): every outcome of a
  send (sent / capped / suppressed / deferred / failed), counted once its transaction committed;
- `userops_notifier_delivery_seconds` (histogram; channel): from when a send fell due (its
  re-check passed) to the channel's acknowledgement (receiver 2xx, SMTP accepted, inbox row);
- `userops_notifier_event_to_message_seconds` (histogram; channel): from the triggering event's
  `receivedAt` at ingest to the channel's acknowledgement, for sends without a delay or deferral;
- `userops_notifier_inputs_evaluated_total` (counter; source): inputs evaluated against every
  campaign's trigger (events, lifecycle, rewards, timers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

MESSAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


@dataclass
class NotifierMetrics:
    messages: Counter
    delivery_seconds: Histogram
    event_to_message_seconds: Histogram
    inputs: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> NotifierMetrics:
        return cls(
            messages=Counter(
                "userops_notifier_messages",
                "Outcomes of sends, by campaign, channel and outcome.",
                ["campaign", "channel", "outcome"],
                registry=registry,
            ),
            delivery_seconds=Histogram(
                "userops_notifier_delivery_seconds",
                "From a send falling due to the channel's acknowledgement.",
                ["channel"],
                buckets=MESSAGE_BUCKETS,
                registry=registry,
            ),
            event_to_message_seconds=Histogram(
                "userops_notifier_event_to_message_seconds",
                "From the triggering event's receivedAt to the channel's acknowledgement (no delay).",
                ["channel"],
                buckets=MESSAGE_BUCKETS,
                registry=registry,
            ),
            inputs=Counter(
                "userops_notifier_inputs_evaluated",
                "Inputs evaluated against the campaigns' triggers, by source.",
                ["source"],
                registry=registry,
            ),
        )


@dataclass
class AfterCommit:
    """Observations made inside a transaction, applied once it commits (never for a rollback or
    a retried batch, so the counters match what was stored)."""

    pending: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def of(cls, session: AsyncSession) -> AfterCommit:
        key = "notifier.after_commit"
        found = session.info.get(key)
        if isinstance(found, AfterCommit):
            return found
        made = cls()
        session.info[key] = made

        def committed(*_: object) -> None:
            session.info.pop(key, None)
            for observe in made.pending:
                observe()

        def rolled_back(*_: object) -> None:
            session.info.pop(key, None)
            if event.contains(session.sync_session, "after_commit", committed):
                event.remove(session.sync_session, "after_commit", committed)

        event.listen(session.sync_session, "after_commit", committed, once=True)
        event.listen(session.sync_session, "after_rollback", rolled_back, once=True)
        return made

    def add(self, observe: Callable[[], None]) -> None:
        self.pending.append(observe)
