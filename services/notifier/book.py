"""What one transaction writes for the notifier: the `SendBook` turns domain decisions and send
outcomes into rows, timers, jobs and outbox records, then writes them with set-based statements.

Used by every write path (an event batch, a timer batch), always under the users' row locks:

- a planned send due later (a delay) → a `sends` row `planned` and a durable timer
  (`SEND_TIMER`, key = send key) at its due time; due now → re-checked at once;
- `sent` on webhook/email → the row `queued` and ONE job (id = send key, kind = channel) whose
  outcome hook (`channels.py`) publishes `sent` or `failed`; nothing is sent in this transaction;
- `sent` in-app → the inbox row is written here, in the same transaction as the decision (it is
  a database row: no effect outside the database, so no job is needed and the message is in the
  inbox the moment the decision commits), and `sent` is published;
- `deferred` (quiet hours) → the row `deferred` and the send's timer re-armed at `until`;
- capped / suppressed / cancelled / failed → the row's final state;
- every outcome but a queued `sent` → an `outcomes` row and a `userops.deliveries.v1` record in
  the outbox (`delivery_record`: deterministic ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.adapters import records, store
from services.notifier.config import NotifierConfig
from services.notifier.domain.assignment import HOLDOUT
from services.notifier.domain.decide import Decision
from services.notifier.domain.delivery import delivery_record
from services.notifier.domain.inputs import EXPIRY_TIMER
from services.notifier.domain.projection import Projection
from services.notifier.domain.recheck import recheck, record_sent
from services.notifier.domain.sends import Conversion, EntryRecord, PlannedSend, SendOutcome
from services.notifier.domain.unsubscribe import UnsubscribeSigner, one_click_headers, scope_for
from services.notifier.metrics import AfterCommit, NotifierMetrics
from shared.runtime import jobs, outbox, timers

SEND_TIMER: Final = "notifier.send"


@dataclass(frozen=True)
class Channels:
    """What the book needs to hand a message to a channel: webhook endpoint URLs by name, the
    unsubscribe signer and the optional mailto for email headers."""

    endpoints: dict[str, str]
    signer: UnsubscribeSigner
    unsubscribe_mailto: str | None = None


@dataclass
class SendBook:
    cfg: NotifierConfig
    channels: Channels
    deliveries_topic: str
    metrics: NotifierMetrics
    now: datetime
    projections: dict[str, Projection] = field(default_factory=dict)
    sends: dict[str, store.SendRow] = field(default_factory=dict)
    outcomes: list[records.OutcomeRow] = field(default_factory=list)
    published: list[outbox.OutboxMessage] = field(default_factory=list)
    entries: list[EntryRecord] = field(default_factory=list)
    conversions: list[Conversion] = field(default_factory=list)
    inbox: list[records.InboxRow] = field(default_factory=list)
    queued: list[jobs.Job] = field(default_factory=list)
    arm: dict[tuple[str, str], timers.Timer] = field(default_factory=dict)
    disarm: dict[str, set[str]] = field(default_factory=dict)
    counted: list[tuple[str, str, str]] = field(default_factory=list)
    latencies: list[tuple[str, float, float | None]] = field(default_factory=list)

    # -- decisions ------------------------------------------------------------------------------

    def take(self, decision: Decision, received_at: datetime | None) -> None:
        """Everything one input decided, for the projection as `decide` left it."""
        p = decision.projection
        self.projections[p.user_id] = p
        self.entries.extend(decision.entries)
        self.conversions.extend(decision.conversions)
        for outcome in decision.outcomes:  # suppressions at trigger time (holdout, churned)
            self._final(outcome, None)
        for planned in decision.sends:
            if planned.due_at <= self.now:
                self.settle(p, planned, received_at)
            else:
                self.sends[planned.send_key] = _row(planned, "planned", due_at=planned.due_at)
                self._arm(SEND_TIMER, planned.send_key, planned.due_at, p.user_id)
        if decision.next_check_at is not None:
            self._arm(EXPIRY_TIMER, p.user_id, decision.next_check_at, p.user_id)
        else:
            self.disarm.setdefault(EXPIRY_TIMER, set()).add(p.user_id)
            self.arm.pop((EXPIRY_TIMER, p.user_id), None)

    def settle(self, p: Projection, planned: PlannedSend, received_at: datetime | None) -> SendOutcome:
        """Re-check `planned` now and book its outcome; `received_at` is the triggering event's
        (kept only for a send that goes out without delay, for the event → message latency)."""
        self.projections[p.user_id] = p
        outcome = recheck(p, planned, self.cfg, self.now, signer=self.channels.signer)
        if outcome.kind == "deferred":
            assert outcome.until is not None
            self.sends[planned.send_key] = _row(planned, "deferred", outcome.reason, due_at=outcome.until)
            self._arm(SEND_TIMER, planned.send_key, outcome.until, p.user_id)
            self._publish(outcome)
        elif outcome.kind == "sent":
            self._sent(p, planned, outcome, received_at if planned.due_at <= planned.trigger_at else None)
        else:
            self._final(outcome, planned)
        return outcome

    def _sent(
        self, p: Projection, planned: PlannedSend, outcome: SendOutcome, received_at: datetime | None
    ) -> None:
        campaign = self.cfg.derived.campaigns[planned.campaign]
        record_sent(p, campaign, self.now)
        assert outcome.message is not None
        message: dict[str, Any] = {"fields": outcome.message.fields, "payload": outcome.message.payload}
        self.disarm.setdefault(SEND_TIMER, set()).add(planned.send_key)
        self.arm.pop((SEND_TIMER, planned.send_key), None)
        if planned.channel == "inapp":
            fields = outcome.message.fields
            self.inbox.append(
                records.InboxRow(
                    planned.send_key,
                    p.user_id,
                    planned.campaign,
                    fields.get("title", ""),
                    fields.get("body", ""),
                    fields.get("url"),
                    self.now,
                )
            )
            self.sends[planned.send_key] = _row(
                planned, "sent", message=message, received_at=received_at, sent_at=self.now
            )
            self._publish(outcome)
            self.latencies.append(("inapp", 0.0, _age(received_at, self.now)))
            return
        payload: dict[str, Any] = {
            "user_id": p.user_id,
            "campaign": planned.campaign,
            "variant": planned.variant,
            "channel": planned.channel,
            "trigger_id": planned.input_id,
            "config_version": self.cfg.version,
            "due_at": self.now.isoformat(),
            "received_at": received_at.isoformat() if received_at else None,
        }
        if planned.channel == "webhook":
            assert campaign.endpoint is not None
            payload["url"] = self.channels.endpoints[campaign.endpoint]
            payload["body"] = {
                "type": "userops.message",
                "sendKey": planned.send_key,
                "campaign": planned.campaign,
                "variant": planned.variant,
                "userId": p.user_id,
                "data": outcome.message.payload,
            }
        else:
            url = self.channels.signer.url(p.user_id, scope_for(topic=campaign.topic), self.now)
            headers = one_click_headers(url)
            if self.channels.unsubscribe_mailto:
                headers["List-Unsubscribe"] += (
                    f", <mailto:{self.channels.unsubscribe_mailto}?subject=unsubscribe>"
                )
            payload |= {"to": p.email, "fields": outcome.message.fields, "headers": headers}
        self.queued.append(jobs.Job(planned.send_key, planned.channel, payload))
        self.sends[planned.send_key] = _row(planned, "queued", message=message, received_at=received_at)

    def _final(self, outcome: SendOutcome, planned: PlannedSend | None) -> None:
        row = store.SendRow(
            outcome.send_key,
            outcome.user_id,
            outcome.campaign,
            outcome.variant,
            outcome.channel,
            outcome.kind,
            outcome.reason,
            planned=planned,
            due_at=planned.due_at if planned else outcome.at,
        )
        self.sends[outcome.send_key] = row
        self.disarm.setdefault(SEND_TIMER, set()).add(outcome.send_key)
        self.arm.pop((SEND_TIMER, outcome.send_key), None)
        self._publish(outcome)

    def _publish(self, outcome: SendOutcome, attempts: int = 0) -> None:
        record = delivery_record(outcome, self.cfg.version, attempts)
        self.outcomes.append(
            records.OutcomeRow(
                record.id,
                outcome.send_key,
                outcome.campaign,
                outcome.variant or HOLDOUT,
                outcome.channel,
                outcome.kind,
                outcome.reason,
                outcome.at,
            )
        )
        self.published.append(
            outbox.OutboxMessage(record.id, self.deliveries_topic, record.user_id, record.to_wire())
        )
        self.counted.append((outcome.campaign, outcome.channel, record.outcome))

    def _arm(self, kind: str, key: str, due: datetime, user_id: str) -> None:
        self.arm[(kind, key)] = timers.Timer(kind, key, due, {"user_id": user_id})
        self.disarm.get(kind, set()).discard(key)

    # -- writing --------------------------------------------------------------------------------

    async def flush(self, session: AsyncSession) -> None:
        await store.save_projections(session, list(self.projections.values()))
        await store.upsert_sends(session, list(self.sends.values()))
        await records.add_outcomes(session, self.outcomes)
        await records.add_entries(session, self.entries)
        await records.add_conversions(session, self.conversions)
        await records.add_inbox(session, self.inbox)
        await jobs.enqueue(session, self.queued)
        await timers.schedule(session, list(self.arm.values()))
        for kind, keys in self.disarm.items():
            if keys:
                await timers.cancel(session, kind, sorted(keys))
        await outbox.add(session, self.published)
        metrics = self.metrics
        counted, latencies = list(self.counted), list(self.latencies)

        def observe() -> None:
            for campaign, channel, outcome in counted:
                metrics.messages.labels(campaign=campaign, channel=channel, outcome=outcome).inc()
            for channel, delivery, end_to_end in latencies:
                metrics.delivery_seconds.labels(channel=channel).observe(delivery)
                if end_to_end is not None:
                    metrics.event_to_message_seconds.labels(channel=channel).observe(end_to_end)

        AfterCommit.of(session).add(observe)


def _row(
    planned: PlannedSend,
    state: str,
    reason: str = "",
    *,
    message: dict[str, Any] | None = None,
    received_at: datetime | None = None,
    due_at: datetime | None = None,
    sent_at: datetime | None = None,
) -> store.SendRow:
    return store.SendRow(
        planned.send_key,
        planned.user_id,
        planned.campaign,
        planned.variant,
        planned.channel,
        state,
        reason,
        planned=planned,
        message=message,
        received_at=received_at,
        due_at=due_at,
        sent_at=sent_at,
    )


def _age(since: datetime | None, now: datetime) -> float | None:
    return None if since is None else max(0.0, (now - since).total_seconds())
