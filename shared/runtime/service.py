"""The consumer-service builder: one composition of the runtime for every consumer service.

A service declares what is its own — its handler, topics, timer kinds, job kinds, admin routes
and business metrics — in a `ConsumerService`; `build_app()` owns everything else:

- start: migrations (under the migration lock), the producer, the consumer runner, the outbox
  relay, the timer workers, the job workers, then the service's background tasks;
- probes: `/health` (the process lives and no essential task has died), `/ready` (every part is
  ready: the consumer holds its assignment and reaches the broker and the database, the relay,
  timer and job workers are healthy, and the database answered a `SELECT 1` within the last
  15 s), `/metrics`;
- errors: every HTTP error as `{"code", "message"}`;
- failure: an essential task that ends while the service is not stopping is logged once as
  critical and ends the process with exit code 1 (via SIGTERM to itself, so the in-flight work of
  the other parts still finishes), never a live zombie;
- stop (SIGTERM): the consumer finishes and commits its batch, timer and job workers stop, the
  relay drains what was committed, background tasks are cancelled, the producer and engine close.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import uvicorn
from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.http import install_json_errors, probes_router
from shared.kafka import create_producer
from shared.logging import get_logger
from shared.metrics import metrics_router
from shared.runtime import collector, migrations
from shared.runtime.db import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_STATEMENT_TIMEOUT,
    DatabaseWatch,
    create_engine,
    session_factory,
)
from shared.runtime.jobs import JobKind, JobWorker
from shared.runtime.metrics import RuntimeMetrics
from shared.runtime.outbox import OutboxRelay
from shared.runtime.runner import ConsumerRunner, Handler, RunnerSettings
from shared.runtime.timers import TimerHandler, TimerWorker

T = TypeVar("T")
log = get_logger(__name__)

Background = Callable[[AsyncEngine], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class TimerKinds:
    """Timer kinds fired by `handler`, with how many workers and how many timers per batch."""

    handler: TimerHandler
    kinds: Sequence[str]
    workers: int = 1
    batch_size: int = 1000
    max_attempts: int = 5  # a timer whose handler fails this often is dead (listed, replayable)


@dataclass(frozen=True)
class ConsumerService(Generic[T]):
    """What a consumer service declares; `build_app()` runs it on the runtime."""

    name: str  # "segmenter": the metrics' service label and the log's service field
    db_url: str
    kafka_bootstrap: str
    migrations: Path  # the service's Alembic script location
    runner: RunnerSettings
    handler: Handler[T]
    timers: Sequence[TimerKinds] = ()
    jobs: Sequence[JobKind] = ()
    job_workers: int = 1
    routers: Sequence[APIRouter] = ()
    background: Sequence[Background] = ()  # not essential: cancelled at stop, retried by themselves
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    on_started: Callable[[FastAPI], None] | None = None  # e.g. put config on app.state for routes
    db_connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    db_statement_timeout: float | None = DEFAULT_STATEMENT_TIMEOUT  # not for migrations: unlimited


@dataclass
class Parts:
    """What the lifespan started; read by the probes and by tests."""

    runner: ConsumerRunner[Any] | None = None
    relay: OutboxRelay | None = None
    timer_workers: list[TimerWorker] = field(default_factory=list)
    job_workers: list[JobWorker] = field(default_factory=list)
    database: DatabaseWatch | None = None
    essential: list[asyncio.Task[None]] = field(default_factory=list)
    background: list[asyncio.Task[None]] = field(default_factory=list)
    stopping: bool = False
    failed: str | None = None  # the essential task that died, once one has
    on_fatal: Callable[[], None] = field(default=lambda: None)

    def alive(self) -> bool:
        return self.failed is None

    def ready(self) -> tuple[bool, dict[str, Any]]:
        runner = self.runner
        checks: dict[str, Any] = {
            "consumer": bool(runner and runner.ready),
            "outbox": bool(self.relay and self.relay.healthy),
            "timers": all(w.healthy for w in self.timer_workers),
            "jobs": all(w.healthy for w in self.job_workers),
            "database": bool(self.database and self.database.healthy()),
            "tasks": bool(self.essential) and self.failed is None,
        }
        ok = all(checks.values()) and not self.stopping
        if runner is not None:
            checks["consumer_detail"] = runner.check()
        if self.failed is not None:
            checks["failed_task"] = self.failed
        return ok, checks


def build_app(
    service: ConsumerService[Any],
    *,
    registry: CollectorRegistry | None = None,
    title: str | None = None,
    on_fatal: Callable[[], None] | None = None,
) -> FastAPI:
    """A FastAPI app whose lifespan runs `service` on the runtime (see the module docstring).

    `on_fatal` is called once when an essential task dies (`serve()` sets it to shut the server
    down gracefully and exit 1).
    """
    registry = registry or CollectorRegistry()
    parts = Parts(on_fatal=on_fatal or (lambda: None))
    metrics = RuntimeMetrics.create(registry, service.name)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrator = create_engine(
            service.db_url, pool_size=1, connect_timeout=service.db_connect_timeout, statement_timeout=None
        )
        try:
            await migrations.upgrade(migrator, service.migrations)
        finally:
            await migrator.dispose()
        engine = create_engine(
            service.db_url,
            connect_timeout=service.db_connect_timeout,
            statement_timeout=service.db_statement_timeout,
        )
        app.state.engine = engine
        watch_engine = create_engine(
            service.db_url, pool_size=1, connect_timeout=service.db_connect_timeout, statement_timeout=5.0
        )
        database = parts.database = DatabaseWatch(watch_engine)
        producer = create_producer(service.kafka_bootstrap)
        await producer.start()
        sessions = session_factory(engine)
        parts.relay = OutboxRelay(engine, producer, metrics)
        parts.timer_workers = [
            TimerWorker(
                sessions,
                spec.handler,
                spec.kinds,
                metrics,
                service.name,
                batch_size=spec.batch_size,
                max_attempts=spec.max_attempts,
                registry=registry,
                clock=service.clock,
            )
            for spec in service.timers
            for _ in range(spec.workers)
        ]
        if service.jobs:
            parts.job_workers = [
                JobWorker(sessions, service.jobs, registry, service.name) for _ in range(service.job_workers)
            ]

        def committed() -> None:  # new outbox rows, re-armed timers and queued jobs
            assert parts.relay is not None
            parts.relay.notify()
            for worker in (*parts.timer_workers, *parts.job_workers):
                worker.notify()

        parts.runner = ConsumerRunner(
            service.runner, service.handler, sessions, producer, metrics, on_committed=committed
        )
        if service.on_started is not None:
            service.on_started(app)
        collector.tune_for_batches()
        parts.essential = [
            _essential(parts, "consumer", parts.runner.run()),
            _essential(parts, "outbox-relay", parts.relay.run()),
            *(_essential(parts, f"timers-{i}", w.run()) for i, w in enumerate(parts.timer_workers)),
            *(_essential(parts, f"jobs-{i}", w.run()) for i, w in enumerate(parts.job_workers)),
        ]
        parts.background = [
            asyncio.create_task(task(engine), name=f"background-{i}")
            for i, task in enumerate(service.background)
        ]
        parts.background.append(asyncio.create_task(database.run(), name="database-watch"))
        log.info("service started", consumer=service.runner.consumer)
        try:
            yield
        finally:
            parts.stopping = True
            await _shut_down(parts)
            await producer.stop()
            await engine.dispose()
            await watch_engine.dispose()
            log.info("service stopped", failed_task=parts.failed)

    app = FastAPI(title=title or f"userops {service.name}", version="1", lifespan=lifespan)
    app.state.parts = parts
    install_json_errors(app)
    app.include_router(probes_router(parts.ready, alive=parts.alive))
    app.include_router(metrics_router(registry))
    for router in service.routers:
        app.include_router(router)
    return app


def _essential(parts: Parts, name: str, work: Awaitable[None]) -> asyncio.Task[None]:
    """Run `work` as an essential task: if it ends before the service stops, the process ends."""

    async def guarded() -> None:
        await work

    task = asyncio.create_task(guarded(), name=name)

    def ended(t: asyncio.Task[None]) -> None:
        if parts.stopping or parts.failed is not None:
            return
        parts.failed = name
        error = None if t.cancelled() else t.exception()
        log.critical(
            "essential task ended; stopping the process with exit code 1",
            task=name,
            error=repr(error) if error is not None else "returned without being stopped",
        )
        parts.on_fatal()

    task.add_done_callback(ended)
    return task


STOP_WITHIN = 25.0
"""Seconds each shutdown step may take before its stragglers are cancelled (an orchestrator's
grace period is typically 30 s; what is cancelled is redone by the next process: at-least-once)."""


async def _shut_down(parts: Parts) -> None:
    """Stop in dependency order: inputs first, then what drains their effects."""
    if parts.runner is not None:
        parts.runner.stop()
    for worker in (*parts.timer_workers, *parts.job_workers):
        worker.stop()
    await _finish([t for t in parts.essential if t.get_name() != "outbox-relay"])
    if parts.relay is not None:
        parts.relay.stop()  # after the consumer and workers: drain what their last batch wrote
    await _finish(parts.essential)
    for task in parts.background:
        task.cancel()
    await asyncio.gather(*parts.background, return_exceptions=True)


async def _finish(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Wait for `tasks` to end by themselves, at most `STOP_WITHIN` seconds; then cancel them."""
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=STOP_WITHIN)
    if late:
        log.error("parts did not stop in time; cancelling them", parts=sorted(t.get_name() for t in late))
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


def serve(app: FastAPI, host: str, port: int) -> int:
    """Serve `app` until SIGTERM/SIGINT or until an essential task dies.

    A death shuts the server down gracefully (the other parts finish their in-flight work) and
    the exit code is 1, so a supervisor restarts the process. On SIGTERM uvicorn re-raises the
    signal once shut down, as a well-behaved process does.
    """
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=30
        )
    )
    parts: Parts = app.state.parts

    def fatal() -> None:
        server.should_exit = True

    parts.on_fatal = fatal
    server.run()
    if parts.failed is not None:
        return 1
    return 0 if server.started else 3  # 3: the start-up failed (e.g. migrations, broker checks)
