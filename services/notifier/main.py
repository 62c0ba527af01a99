"""Composition root of the notifier: `python -m services.notifier`.

The runtime's builder (`shared.runtime.service`) owns the engine, migrations, producer, consumer,
outbox relay, timer and job workers, probes and shutdown order; this module declares the
notifier's parts: its handler over three topics, its timer kinds, its two job kinds (webhook,
email), its routes and metrics. Invalid settings or config exit 2 naming the file and field.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier.adapters.email import EmailSender, SmtpSettings
from services.notifier.adapters.inbox_tokens import InboxTokens
from services.notifier.adapters.webhook import WebhookSender, mark_sniffio_absent
from services.notifier.api import admin_router
from services.notifier.book import SEND_TIMER, Channels
from services.notifier.channels import DeliveryRecorder, job_kinds
from services.notifier.config import NotifierConfig, load_config
from services.notifier.consumer import EXPIRY_TIMER, NotifierHandler
from services.notifier.domain.unsubscribe import UnsubscribeSigner
from services.notifier.metrics import NotifierMetrics
from services.notifier.settings import NotifierSettings
from services.notifier.user_api import user_router
from shared import topics
from shared.config import ConfigError
from shared.http import admin_auth
from shared.logging import configure_logging
from shared.runtime.runner import RunnerSettings
from shared.runtime.service import ConsumerService, TimerKinds, build_app, serve

MIGRATIONS = Path(__file__).parent / "migrations"


def endpoint_urls(cfg: NotifierConfig, override: str | None) -> dict[str, str]:
    """Each webhook endpoint's URL: the config's, or `<override>/<name>` for local development."""
    if override:
        return {name: f"{override.rstrip('/')}/{name}" for name in cfg.endpoints}
    return {name: e.url for name, e in cfg.endpoints.items()}


def create_app(
    settings: NotifierSettings,
    cfg: NotifierConfig,
    *,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FastAPI:
    registry = registry or CollectorRegistry()
    metrics = NotifierMetrics.create(registry)
    signer = UnsubscribeSigner(
        settings.unsubscribe_secret.get_secret_value().encode(), cfg.unsubscribe.base_url, cfg.unsubscribe.ttl
    )
    channels = Channels(
        endpoints=endpoint_urls(cfg, settings.webhook_endpoints_override),
        signer=signer,
        unsubscribe_mailto=settings.unsubscribe_mailto,
    )
    physical = {
        settings.events_topic: topics.EVENTS,
        settings.lifecycle_topic: topics.LIFECYCLE,
        settings.rewards_topic: topics.REWARDS,
    }
    handler = NotifierHandler(cfg, channels, physical, settings.deliveries_topic, metrics, clock)
    mark_sniffio_absent()
    webhook = WebhookSender(settings.webhook_secret.get_secret_value(), settings.webhook_timeout)
    email = EmailSender(
        SmtpSettings(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_from,
            username=settings.smtp_user,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout,
        )
    )

    async def hold_http_client(engine: AsyncEngine) -> None:  # closes the pool at stop
        try:
            await asyncio.Event().wait()
        finally:
            await webhook.close()

    service = ConsumerService(
        name="notifier",
        db_url=settings.db_url,
        db_connect_timeout=settings.pg_connect_timeout_seconds,
        db_statement_timeout=settings.pg_statement_timeout,
        kafka_bootstrap=settings.kafka_bootstrap,
        migrations=MIGRATIONS,
        runner=RunnerSettings(
            consumer=settings.notifier_group,
            topics=list(physical),
            bootstrap=settings.kafka_bootstrap,
            deadletter_topic=settings.deadletter_topic,
            max_batch=settings.notifier_max_batch,
            lanes=settings.notifier_lanes,
            instance_id=settings.notifier_instance_id,
            session_timeout_ms=settings.notifier_session_timeout_ms,
            dedupe_retention=settings.notifier_dedupe_retention,
        ),
        handler=handler,
        timers=[
            TimerKinds(
                handler,
                [SEND_TIMER, EXPIRY_TIMER],
                workers=settings.notifier_timer_workers,
                batch_size=settings.notifier_timer_batch,
            )
        ],
        jobs=job_kinds(settings, webhook, email, DeliveryRecorder(settings.deliveries_topic, metrics)),
        job_workers=settings.notifier_job_workers,
        routers=[
            admin_router(admin_auth(settings.admin_token.get_secret_value()), cfg),
            user_router(signer, InboxTokens(settings.inbox_secret.get_secret_value().encode()), clock),
        ],
        background=[hold_http_client],
        clock=clock,
    )
    return build_app(service, registry=registry, title="userops notifier")


def main() -> int:
    try:
        settings = NotifierSettings()
    except Exception as exc:  # pydantic ValidationError: names the variable
        print(f"error: notifier settings (USEROPS_* environment): {exc}", file=sys.stderr)
        return 2
    configure_logging("notifier", settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per webhook attempt is noise
    try:
        cfg = load_config(settings.config_path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings, cfg)
    return serve(app, settings.notifier_host, settings.notifier_port)
