"""Composition root: settings + config -> producer, use case, FastAPI app; `python -m services.ingest`.

`create_app(settings, config)` builds an app whose lifespan owns the Kafka producer (tests build
it in-process). `main()` validates the config (a bad file stops the start with file, field and
reason), then serves with uvicorn (uvloop, httptools) in `USEROPS_INGEST_WORKERS` processes, each
on its own `SO_REUSEPORT` socket (`serve.py`); with more than one, Prometheus runs in
multiprocess mode in a temporary directory.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from pydantic.json_schema import models_json_schema

from services.ingest.adapters.kafka_publisher import KafkaPublisher
from services.ingest.api import health_router, ingest_path, ingest_router, install_error_handlers
from services.ingest.config import IngestSettings, ResolvedConfig, load_config
from services.ingest.domain.envelope import KINDS
from services.ingest.domain.rate_limit import RateLimiter
from services.ingest.domain.write_key import KeyRing
from services.ingest.fast_path import IngestApp
from services.ingest.http_metrics import HttpMetricsMiddleware
from services.ingest.intake import Intake
from services.ingest.metrics import IngestMetrics, IterationBuffer
from services.ingest.schemas import REQUEST_MODELS
from services.ingest.serve import listening_sockets, serve_socket, supervise
from shared.config import ConfigError
from shared.kafka import create_producer
from shared.logging import configure_logging, get_logger
from shared.metrics import metrics_router

log = get_logger(__name__)

TITLE = "userops ingest"
VERSION = "1.0.0"
DESCRIPTION = (
    "Segment-compatible tracking API. Send events with the write key as HTTP Basic user (empty "
    "password), as `writeKey` in the body, or as `?writeKey=`. Bodies may be gzip-compressed. "
    '`200 {"success": true}` means Kafka acknowledged every event of the request.'
)


def create_app(
    settings: IngestSettings, config: ResolvedConfig, *, registry: CollectorRegistry | None = None
) -> IngestApp:
    """The ingest app: the ingest paths served directly (`fast_path.py`), the rest by FastAPI.
    Its lifespan starts the producer (without failing if Kafka is down: `/ready` says 503 until
    it is reachable) and stops it, flushing what is in flight."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = IngestMetrics.create(registry)
    buffer = IterationBuffer()  # the metric updates of one loop iteration, written together
    rules = config.rules

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        publisher = KafkaPublisher(
            partial(create_producer, settings.kafka_bootstrap),
            settings.ingest_events_topic,
            ack_timeout=settings.ingest_produce_timeout_seconds,
            probe_interval=settings.ingest_probe_interval_seconds,
            max_probe_interval=settings.ingest_max_probe_interval_seconds,
            max_in_flight_bytes=settings.ingest_max_in_flight_bytes,
        )
        await publisher.start()
        limiter = None
        if rules.rate_limit.enabled:
            # Each worker process admits its share, so the configured rate holds service-wide.
            share = settings.ingest_workers
            limiter = RateLimiter(
                rules.rate_limit.events_per_second / share, max(1.0, rules.rate_limit.burst / share)
            )
        app.state.publisher = publisher
        app.state.intake = served.intake = Intake(
            keys=KeyRing(config.keys),
            limits=config.limits,
            publisher=publisher,
            metrics=metrics,
            rate_limiter=limiter,
            unavailable_retry_after=settings.ingest_unavailable_retry_after_seconds,
            buffer=buffer,
        )
        log.info(
            "ingest_started",
            topic=settings.ingest_events_topic,
            sources=[k.source_id for k in config.keys],
            kafka_available=publisher.available,
        )
        try:
            yield
        finally:
            served.intake = None
            await publisher.stop()
            log.info("ingest_stopped")

    app = FastAPI(title=TITLE, version=VERSION, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    ingest = ingest_router()
    app.include_router(ingest)
    app.include_router(health_router())
    app.include_router(metrics_router(registry))
    install_error_handlers(app)
    app.add_middleware(HttpMetricsMiddleware, requests=metrics.http_requests, duration=metrics.http_duration)
    served = IngestApp(
        app,
        paths={ingest_path(kind): kind for kind in KINDS},
        requests=metrics.http_requests,
        duration=metrics.http_duration,
        retry_after=settings.ingest_unavailable_retry_after_seconds,
        buffer=buffer,
    )
    _document_request_bodies(app)
    return served


def _document_request_bodies(app: FastAPI) -> None:
    """Put the request models into `components.schemas` (the routes take raw bodies, so
    FastAPI does not see them) and declare the HTTP Basic write-key scheme."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        _, defs = models_json_schema(
            [(model, "validation") for model in REQUEST_MODELS.values()],
            ref_template="#/components/schemas/{model}",
        )
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(defs.get("$defs", {}))
        components.setdefault("securitySchemes", {})["writeKeyBasic"] = {
            "type": "http",
            "scheme": "basic",
            "description": "The write key as user name, an empty password.",
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def tune_gc() -> None:
    """Collect garbage less often in a worker process.

    Every request allocates thousands of short-lived containers (parsed JSON, futures) that
    reference counting frees at once; with CPython's default threshold (700) they still trigger
    a collection every request or two, and the older generations then rescan the whole
    long-lived heap (FastAPI, pydantic, aiokafka). Measured with bench/ingest.py: the
    collector took about a third of a worker's CPU. Freezing the startup heap and raising the
    young-generation threshold leaves cyclic garbage to be collected, just less frequently.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def app_from_env() -> IngestApp:
    """The uvicorn factory each worker process calls."""
    settings = IngestSettings()
    configure_logging("ingest", settings.log_level)
    app = create_app(settings, load_config(settings.config_path))
    tune_gc()
    return app


def main() -> None:
    """Check settings and config, then serve; exit code 2 (and why, on stderr) if either is bad."""
    try:
        settings = IngestSettings()
    except ValidationError as exc:
        print(f"ingest: invalid USEROPS_* settings: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    configure_logging("ingest", settings.log_level)
    try:
        load_config(settings.config_path)
    except ConfigError as exc:
        log.error("config_invalid", error=str(exc))
        print(f"ingest: invalid configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    metrics_dir = None
    if settings.ingest_workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="userops-ingest-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        sockets = listening_sockets(settings.ingest_host, settings.ingest_port, settings.ingest_workers)
    except OSError as exc:
        print(
            f"ingest: cannot listen on {settings.ingest_host}:{settings.ingest_port}: {exc}", file=sys.stderr
        )
        raise SystemExit(2) from exc
    log.info(
        "ingest_listening",
        host=settings.ingest_host,
        port=sockets[0].getsockname()[1],
        workers=settings.ingest_workers,
    )
    try:
        if len(sockets) == 1:
            serve_socket(sockets[0])
        else:
            code = supervise(sockets)
            if code:
                raise SystemExit(code)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
