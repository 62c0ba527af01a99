"""Composition root of the segmenter: `python -m services.segmenter`.

The FastAPI lifespan owns every long-lived resource: the engine (migrated at start), the
producer, the consumer runner, the outbox relay, the timer workers and the metrics refresher.
SIGTERM (uvicorn) → the runner finishes its batch and commits, the relay drains, then exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.segmenter.api import admin_router
from services.segmenter.config import SegmenterConfig
from services.segmenter.consumer import IDLE_TIMER, SegmenterHandler
from services.segmenter.metrics import SegmenterMetrics
from services.segmenter.settings import SegmenterSettings
from shared.config import ConfigError, config_version, load_yaml
from shared.http import admin_auth, probes_router
from shared.kafka import create_producer
from shared.logging import configure_logging, get_logger
from shared.metrics import metrics_router
from shared.runtime import collector, migrations
from shared.runtime.db import create_engine, session_factory
from shared.runtime.metrics import RuntimeMetrics
from shared.runtime.outbox import OutboxRelay
from shared.runtime.runner import ConsumerRunner, RunnerSettings
from shared.runtime.timers import TimerWorker

MIGRATIONS = Path(__file__).parent / "migrations"
log = get_logger(__name__)


@dataclass(frozen=True)
class LoadedConfig:
    rules: SegmenterConfig
    version: str
    path: Path


def load_config(settings: SegmenterSettings) -> LoadedConfig:
    """Load and validate config/segmenter.yaml; raises ConfigError naming file, field and reason."""
    path = settings.config_path
    return LoadedConfig(load_yaml(path, SegmenterConfig), config_version(path), path)


@dataclass
class Parts:
    """What the lifespan started, exposed for probes and tests."""

    runner: ConsumerRunner | None = None  # type: ignore[type-arg]
    relay: OutboxRelay | None = None
    timer_workers: list[TimerWorker] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def ready(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {
            "consumer": bool(self.runner and self.runner.ready),
            "outbox": bool(self.relay and self.relay.healthy),
            "timers": bool(self.timer_workers) and all(w.healthy for w in self.timer_workers),
            "tasks": bool(self.tasks) and not any(t.done() for t in self.tasks),
        }
        ok = all(checks.values())
        checks["partitions"] = sorted(
            f"{tp.topic}:{tp.partition}" for tp in (self.runner.assignment if self.runner else ())
        )
        return ok, checks


def create_app(
    settings: SegmenterSettings,
    config: LoadedConfig,
    *,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FastAPI:
    registry = registry or CollectorRegistry()
    parts = Parts()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.db_url)
        app.state.engine = engine
        await migrations.upgrade(engine, MIGRATIONS)
        producer = create_producer(settings.kafka_bootstrap)
        await producer.start()
        runtime_metrics = RuntimeMetrics.create(registry, "segmenter")
        business = SegmenterMetrics.create(registry)
        sessions = session_factory(engine)
        handler = SegmenterHandler(config.rules, config.version, settings.lifecycle_topic, clock)
        parts.relay = OutboxRelay(engine, producer, runtime_metrics)
        parts.timer_workers = [
            TimerWorker(
                sessions,
                handler,
                [IDLE_TIMER],
                runtime_metrics,
                "segmenter",
                batch_size=settings.segmenter_timer_batch,
                clock=clock,
            )
            for _ in range(settings.segmenter_timer_workers)
        ]

        def committed() -> None:
            assert parts.relay is not None
            parts.relay.notify()
            for w in parts.timer_workers:
                w.notify()

        parts.runner = ConsumerRunner(
            RunnerSettings(
                consumer=settings.segmenter_group,
                topics=[settings.events_topic],
                bootstrap=settings.kafka_bootstrap,
                deadletter_topic=settings.deadletter_topic,
                max_batch=settings.segmenter_max_batch,
                lanes=settings.segmenter_lanes,
                instance_id=settings.segmenter_instance_id,
                session_timeout_ms=settings.segmenter_session_timeout_ms,
            ),
            handler,
            sessions,
            producer,
            runtime_metrics,
            on_committed=committed,
        )
        collector.tune_for_batches()
        parts.tasks = [
            asyncio.create_task(parts.runner.run(), name="consumer"),
            asyncio.create_task(parts.relay.run(), name="outbox-relay"),
            *(asyncio.create_task(w.run(), name=f"timers-{i}") for i, w in enumerate(parts.timer_workers)),
            asyncio.create_task(
                business.run(engine, every=settings.segmenter_metrics_every), name="business-metrics"
            ),
        ]
        for task in parts.tasks:
            task.add_done_callback(_report_crash)
        log.info("segmenter started", config=str(config.path), config_version=config.version)
        try:
            yield
        finally:
            parts.runner.stop()
            for w in parts.timer_workers:
                w.stop()
            main_tasks = parts.tasks[: 2 + len(parts.timer_workers)]
            await asyncio.gather(main_tasks[0], *main_tasks[2:], return_exceptions=True)
            parts.relay.stop()  # after the consumer: drain what its last batch wrote
            await asyncio.gather(main_tasks[1], return_exceptions=True)
            parts.tasks[-1].cancel()
            await asyncio.gather(parts.tasks[-1], return_exceptions=True)
            await producer.stop()
            await engine.dispose()
            log.info("segmenter stopped")

    app = FastAPI(title="userops segmenter", version="1", lifespan=lifespan)
    app.state.parts = parts
    app.include_router(probes_router(parts.ready))
    app.include_router(metrics_router(registry))
    app.include_router(admin_router(admin_auth(settings.admin_token.get_secret_value())))
    return app


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical(
            "background task crashed; /ready is 503", task=task.get_name(), error=repr(task.exception())
        )


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
    uvicorn.run(
        app,
        host=settings.segmenter_host,
        port=settings.segmenter_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    return 0
