"""Composition root of the rewards service: `python -m services.rewards`.

The runtime's builder (`shared.runtime.service`) owns the engine, migrations, producer, consumer,
outbox relay, timer workers, probes and shutdown order; this module only declares the rewards
service's parts: its handler over events and lifecycle records, its timer kinds, its API and its
business metrics. Invalid settings or rules stop it with exit code 2, naming the file and field.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from services.rewards.api import ApiContext, admin_router
from services.rewards.config import RewardsConfig, load_config
from services.rewards.consumer import RewardsHandler
from services.rewards.metrics import RewardsMetrics
from services.rewards.settings import RewardsSettings
from services.rewards.unit import TIMER_KINDS
from shared.config import ConfigError
from shared.http import admin_auth
from shared.logging import configure_logging
from shared.runtime.runner import RunnerSettings
from shared.runtime.service import ConsumerService, TimerKinds, build_app, serve

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(
    settings: RewardsSettings,
    cfg: RewardsConfig,
    *,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FastAPI:
    registry = registry or CollectorRegistry()
    business = RewardsMetrics.create(registry)
    handler = RewardsHandler(
        cfg,
        events_topic=settings.events_topic,
        rewards_topic=settings.rewards_topic,
        clock=clock,
        metrics=business,
    )

    async def refresh_metrics(engine: AsyncEngine) -> None:
        await business.run(engine, cfg, every=settings.rewards_metrics_every)

    api = ApiContext(cfg, settings.rewards_topic, clock, business, handler.cache)
    service = ConsumerService(
        name="rewards",
        db_url=settings.db_url,
        db_connect_timeout=settings.pg_connect_timeout_seconds,
        db_statement_timeout=settings.pg_statement_timeout,
        kafka_bootstrap=settings.kafka_bootstrap,
        migrations=MIGRATIONS,
        runner=RunnerSettings(
            consumer=settings.rewards_group,
            topics=[settings.events_topic, settings.lifecycle_topic],
            bootstrap=settings.kafka_bootstrap,
            deadletter_topic=settings.deadletter_topic,
            max_batch=settings.rewards_max_batch,
            lanes=settings.rewards_lanes,
            instance_id=settings.rewards_instance_id,
            session_timeout_ms=settings.rewards_session_timeout_ms,
            dedupe_retention=settings.rewards_dedupe_retention,
        ),
        handler=handler,
        timers=[
            TimerKinds(
                handler,
                TIMER_KINDS,
                workers=settings.rewards_timer_workers,
                batch_size=settings.rewards_timer_batch,
            )
        ],
        routers=[admin_router(admin_auth(settings.admin_token.get_secret_value()), api)],
        background=[refresh_metrics],
        clock=clock,
    )
    return build_app(service, registry=registry, title="userops rewards")


def main() -> int:
    try:
        settings = RewardsSettings()
    except Exception as exc:  # pydantic ValidationError: name the variable
        print(f"error: rewards settings: {exc}", file=sys.stderr)
        return 2
    configure_logging("rewards", settings.log_level)
    try:
        cfg = load_config(settings.config_path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings, cfg)
    return serve(app, settings.rewards_host, settings.rewards_port)
