"""The runtime's metrics, defined once and registered on the service's registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS

_E2E_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


@dataclass(frozen=True)
class RuntimeMetrics:
    processed: Counter
    deadlettered: Counter
    retries: Counter
    processing_seconds: Histogram
    end_to_end_seconds: Histogram
    lag: Gauge
    ready: Gauge
    outbox_backlog: Gauge
    timer_backlog: Gauge
    timers_fired: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry, service: str) -> RuntimeMetrics:
        outbox_backlog = Gauge(
            "userops_outbox_backlog", "Outbox rows not yet published.", ["service"], registry=registry
        )
        timer_backlog = Gauge(
            "userops_timer_backlog", "Timers due now and not yet fired.", ["service"], registry=registry
        )
        return cls(
            processed=Counter(
                "userops_consumer_messages_processed",
                "Messages applied (or found duplicate).",
                ["consumer", "topic"],
                registry=registry,
            ),
            deadlettered=Counter(
                "userops_consumer_messages_deadlettered",
                "Messages sent to the dead-letter topic.",
                ["consumer", "topic", "reason"],
                registry=registry,
            ),
            retries=Counter(
                "userops_consumer_retries",
                "Batches retried after a transient failure.",
                ["consumer"],
                registry=registry,
            ),
            processing_seconds=Histogram(
                "userops_consumer_processing_seconds",
                "Time to apply one batch.",
                ["consumer"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            end_to_end_seconds=Histogram(
                "userops_consumer_end_to_end_seconds",
                "Time from ingest (receivedAt) to applied.",
                ["consumer"],
                buckets=_E2E_BUCKETS,
                registry=registry,
            ),
            lag=Gauge(
                "userops_consumer_lag",
                "Messages behind the end of the partition.",
                ["consumer", "topic", "partition"],
                registry=registry,
            ),
            ready=Gauge(
                "userops_consumer_ready",
                "1 while the consumer is making progress.",
                ["consumer"],
                registry=registry,
            ),
            outbox_backlog=outbox_backlog.labels(service=service),
            timer_backlog=timer_backlog.labels(service=service),
            timers_fired=Counter(
                "userops_timers_fired", "Durable timers handled.", ["service", "kind"], registry=registry
            ),
        )
