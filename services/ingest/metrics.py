"""Ingest's Prometheus metrics, registered once on an injected registry.

Labels are bounded: routes are path templates (unknown paths are `unmatched`), methods a fixed
set, statuses the few the API answers, event types the six Segment types; never a write key, a
source's key or a user id.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from shared.metrics import LATENCY_BUCKETS, PREFIX

BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2500)


@dataclass(frozen=True)
class IngestMetrics:
    http_requests: Counter
    http_duration: Histogram
    events_accepted: Counter
    events_rejected: Counter
    produce_duration: Histogram
    batch_size: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> IngestMetrics:
        return cls(
            http_requests=Counter(
                f"{PREFIX}http_requests_total",
                "HTTP requests answered, by route template, method and status.",
                ["route", "method", "status"],
                registry=registry,
            ),
            http_duration=Histogram(
                f"{PREFIX}http_request_duration_seconds",
                "Time to answer an HTTP request, by route template and method.",
                ["route", "method"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            events_accepted=Counter(
                f"{PREFIX}ingest_events_accepted_total",
                "Events acknowledged by Kafka and answered 200, by event type.",
                ["type"],
                registry=registry,
            ),
            events_rejected=Counter(
                f"{PREFIX}ingest_events_rejected_total",
                "Events refused, by reason (invalid, unauthorized, too_large, rate_limited, unavailable).",
                ["reason"],
                registry=registry,
            ),
            produce_duration=Histogram(
                f"{PREFIX}ingest_produce_duration_seconds",
                "Time from handing a request's events to the producer until Kafka acknowledged "
                "all of them (or failed).",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            batch_size=Histogram(
                f"{PREFIX}ingest_batch_size",
                "Events per accepted request.",
                buckets=BATCH_SIZE_BUCKETS,
                registry=registry,
            ),
        )
