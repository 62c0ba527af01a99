"""Prometheus helpers: every service registers its metrics once, on an injected registry."""

from __future__ import annotations

import os

from fastapi import APIRouter, Response
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "userops_"

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def metrics_router(registry: CollectorRegistry) -> APIRouter:
    """`GET /metrics` in the Prometheus text format.

    With several uvicorn workers (`PROMETHEUS_MULTIPROC_DIR` set) each request aggregates every
    worker's samples, so a scrape sees the whole process group, not one random worker.
    """
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            scrape = CollectorRegistry()
            multiprocess.MultiProcessCollector(scrape)  # type: ignore[no-untyped-call]
            return Response(generate_latest(scrape), media_type=CONTENT_TYPE_LATEST)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
