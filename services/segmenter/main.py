"""Composition root of the segmenter: `python -m services.segmenter`.

The runtime's builder (`shared.runtime.service`) owns the engine, migrations, producer, consumer,
outbox relay, timer workers, probes and shutdown order; this module only declares the segmenter's
parts: its handler, topics, timer kind, admin routes and business metrics.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from services.segmenter.api import admin_router
from services.segmenter.config import SegmenterConfig
from services.segmenter.consumer import IDLE_TIMER, SegmenterHandler
from services.segmenter.metrics import SegmenterMetrics
from services.segmenter.settings import SegmenterSettings
from shared.config import ConfigError, config_version, load_yaml
from shared.http import admin_auth
from shared.logging import configure_logging
from shared.runtime.runner import RunnerSettings
from shared.runtime.service import ConsumerService, TimerKinds, build_app, serve

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class LoadedConfig:
    rules: SegmenterConfig
    version: str
    path: Path


def load_config(settings: SegmenterSettings) -> LoadedConfig:
    """Load and validate config/segmenter.yaml; raises ConfigError naming file, field and reason."""
    path = settings.config_path
    return LoadedConfig(load_yaml(path, SegmenterConfig), config_version(path), path)


def create_app(
    settings: SegmenterSettings,
    config: LoadedConfig,
    *,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FastAPI:
    registry = registry or CollectorRegistry()
    business = SegmenterMetrics.create(registry)
    handler = SegmenterHandler(
        config.rules, config.version, settings.lifecycle_topic, clock, metrics=business
    )

    async def refresh_metrics(engine: AsyncEngine) -> None:
        await business.run(engine, every=settings.segmenter_metrics_every)

    service = ConsumerService(
        name="segmenter",
        db_url=settings.db_url,
        db_connect_timeout=settings.pg_connect_timeout_seconds,
        db_statement_timeout=settings.pg_statement_timeout,
        kafka_bootstrap=settings.kafka_bootstrap,
        migrations=MIGRATIONS,
        runner=RunnerSettings(
            consumer=settings.segmenter_group,
            topics=[settings.events_topic],
            bootstrap=settings.kafka_bootstrap,
            deadletter_topic=settings.deadletter_topic,
            max_batch=settings.segmenter_max_batch,
            lanes=settings.segmenter_lanes,
            instance_id=settings.segmenter_instance_id,
            session_timeout_ms=settings.segmenter_session_timeout_ms,
            dedupe_retention=settings.segmenter_dedupe_retention,
        ),
        handler=handler,
        timers=[
            TimerKinds(
                handler,
                [IDLE_TIMER],
                workers=settings.segmenter_timer_workers,
                batch_size=settings.segmenter_timer_batch,
            )
        ],
        routers=[admin_router(admin_auth(settings.admin_token.get_secret_value()))],
        background=[refresh_metrics],
        clock=clock,
    )
    return build_app(service, registry=registry, title="userops segmenter")


def main() -> int:
    try:
        settings = SegmenterSettings()
    except Exception as exc:  # pydantic ValidationError: name the variable
        print(f"error: segmenter settings: {exc}", file=sys.stderr)
        return 2
    configure_logging("segmenter", settings.log_level)
    try:
        config = load_config(settings)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings, config)
    return serve(app, settings.segmenter_host, settings.segmenter_port)
