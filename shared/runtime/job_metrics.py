"""The job queue's metrics: labelled by service and job kind only (bounded), never by job id."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import ClassVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# An attempt is a network call with a timeout of seconds to minutes.
_ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True)
class JobMetrics:
    """One set per (registry, service): `create` returns the set already registered there."""

    service: str
    queued: Gauge
    running: Gauge
    oldest_due_seconds: Gauge
    succeeded: Counter
    failed: Counter
    retried: Counter
    attempt_seconds: Histogram
    _created: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, dict[str, JobMetrics]]] = (
        weakref.WeakKeyDictionary()
    )

    @classmethod
    def create(cls, registry: CollectorRegistry, service: str) -> JobMetrics:
        existing = cls._created.setdefault(registry, {})
        if service not in existing:
            labels = ["service", "kind"]
            existing[service] = cls(
                service=service,
                queued=Gauge(
                    "userops_jobs_queued",
                    "Jobs waiting to run (due or backing off).",
                    labels,
                    registry=registry,
                ),
                running=Gauge(
                    "userops_jobs_running", "Jobs a worker holds the lease of.", labels, registry=registry
                ),
                oldest_due_seconds=Gauge(
                    "userops_jobs_oldest_due_seconds",
                    "How long the oldest due job has waited for a worker (0: none waiting).",
                    labels,
                    registry=registry,
                ),
                succeeded=Counter("userops_jobs_succeeded", "Jobs performed.", labels, registry=registry),
                failed=Counter(
                    "userops_jobs_failed",
                    "Jobs failed for good (listed and replayable).",
                    labels,
                    registry=registry,
                ),
                retried=Counter(
                    "userops_jobs_retried",
                    "Job attempts failed and queued again after a backoff.",
                    labels,
                    registry=registry,
                ),
                attempt_seconds=Histogram(
                    "userops_job_attempt_seconds",
                    "Time to perform one attempt of a job.",
                    labels,
                    buckets=_ATTEMPT_BUCKETS,
                    registry=registry,
                ),
            )
        return existing[service]

    def refresh(self, kinds: list[str], rows: dict[str, tuple[int, int, float]]) -> None:
        """Set the gauges from `kind -> (queued, running, oldest due age)`; kinds absent are 0."""
        for kind in kinds:
            queued, running, oldest = rows.get(kind, (0, 0, 0.0))
            self.queued.labels(service=self.service, kind=kind).set(queued)
            self.running.labels(service=self.service, kind=kind).set(running)
            self.oldest_due_seconds.labels(service=self.service, kind=kind).set(oldest)
