"""The notifier's job kinds (`webhook`, `email`) and the hook that records each attempt.

A job's id is its send key. `perform` runs outside any transaction (the job queue's worker);
`on_outcome` runs in the transaction that records the attempt, under the user's row lock: it
writes the send's state and, for a final outcome, its `outcomes` row and the `sent` / `failed`
`userops.deliveries.v1` record in the outbox — atomically with the job's own state.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.adapters import records, store
from services.notifier.adapters.email import EmailSender
from services.notifier.adapters.webhook import WebhookSender
from services.notifier.domain.delivery import delivery_record
from services.notifier.domain.sends import OutcomeKind, SendOutcome
from services.notifier.metrics import AfterCommit, NotifierMetrics
from services.notifier.settings import NotifierSettings
from shared.runtime import outbox
from shared.runtime.jobs import ClaimedJob, JobKind, JobOutcome

MAX_REASON = 500


class DeliveryRecorder:
    """The `on_outcome` hook of both channels."""

    def __init__(self, deliveries_topic: str, metrics: NotifierMetrics) -> None:
        self._topic = deliveries_topic
        self._metrics = metrics

    async def __call__(self, session: AsyncSession, job: ClaimedJob, outcome: JobOutcome) -> None:
        p = job.payload
        await store.lock_users(session, [p["user_id"]], create=False)
        now = datetime.now(UTC)
        reason = (outcome.error or "")[:MAX_REASON]
        if outcome.state == "retrying":
            await store.record_attempt(session, job.id, None, reason, job.attempt, None)
            return
        sent = outcome.state == "succeeded"
        kind: OutcomeKind = "sent" if sent else "failed"
        result = SendOutcome(
            kind,
            job.id,
            p["campaign"],
            p["variant"],
            p["channel"],
            p["user_id"],
            p["trigger_id"],
            now,
            "" if sent else reason or "failed",
        )
        record = delivery_record(result, p["config_version"], attempts=job.attempt)
        await store.record_attempt(session, job.id, kind, result.reason, job.attempt, now if sent else None)
        await records.add_outcomes(
            session,
            [
                records.OutcomeRow(
                    record.id,
                    job.id,
                    result.campaign,
                    result.variant,
                    result.channel,
                    kind,
                    result.reason,
                    now,
                )
            ],
        )
        await outbox.add(
            session, [outbox.OutboxMessage(record.id, self._topic, record.user_id, record.to_wire())]
        )
        metrics, channel = self._metrics, result.channel
        due = datetime.fromisoformat(p["due_at"])
        received = datetime.fromisoformat(p["received_at"]) if p.get("received_at") else None

        def observe() -> None:
            metrics.messages.labels(campaign=result.campaign, channel=channel, outcome=kind).inc()
            if sent:
                metrics.delivery_seconds.labels(channel=channel).observe(
                    max(0.0, (now - due).total_seconds())
                )
                if received is not None:
                    metrics.event_to_message_seconds.labels(channel=channel).observe(
                        max(0.0, (now - received).total_seconds())
                    )

        AfterCommit.of(session).add(observe)


def job_kinds(
    settings: NotifierSettings,
    webhook: WebhookSender,
    email: EmailSender,
    recorder: DeliveryRecorder,
) -> list[JobKind]:
    """The two job kinds with their retry schedules (documented in settings.py)."""
    return [
        JobKind(
            "webhook",
            webhook.perform,
            max_attempts=settings.webhook_max_attempts,
            backoff_initial=settings.webhook_backoff_initial,
            backoff_max=settings.webhook_backoff_max,
            timeout=settings.webhook_timeout + 5.0,
            on_outcome=recorder,
        ),
        JobKind(
            "email",
            email.perform,
            max_attempts=settings.email_max_attempts,
            backoff_initial=settings.email_backoff_initial,
            backoff_max=settings.email_backoff_max,
            timeout=settings.smtp_timeout + 5.0,
            on_outcome=recorder,
        ),
    ]
