"""Ingest's Prometheus metrics, registered once on an injected registry.

Labels are bounded: routes are path templates (unknown paths are `unmatched`), methods a fixed
set, statuses the few the API answers, event types the six Segment types; never a write key, a
source's key or a user id.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

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


class IterationBuffer:
    """Counts and observations made during one event-loop iteration, added to their metrics
    once at its end.

    With several workers every metric update is a locked write into a memory-mapped file
    (Prometheus multiprocess mode): a counter's `inc` cost about as much as parsing a small
    event, a histogram's `observe` twice that, and a single-event request made five of them.
    Requests answered in the same iteration now share those writes (a histogram gets one write
    per touched bucket and one for the sum). Nothing waits: the buffer is flushed by a callback
    scheduled for the end of the iteration, before the loop reads the next request, so a scrape
    sees every request answered before it. `inc` and `observe` take metric children
    (`metric.labels(...)`, or an unlabelled metric).
    """

    def __init__(self) -> None:
        self._counts: dict[Any, float] = {}
        self._observed: dict[Any, list[float]] = {}
        self._scheduled = False

    def inc(self, counter: Any, amount: float = 1.0) -> None:
        self._counts[counter] = self._counts.get(counter, 0.0) + amount
        if not self._scheduled:
            self._schedule()

    def observe(self, histogram: Any, value: float) -> None:
        values = self._observed.get(histogram)
        if values is None:
            self._observed[histogram] = [value]
        else:
            values.append(value)
        if not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        try:
            asyncio.get_running_loop().call_soon(self.flush)
            self._scheduled = True
        except RuntimeError:  # no loop (a synchronous caller): write now
            self.flush()

    def flush(self) -> None:
        self._scheduled = False
        counts, self._counts = self._counts, {}
        observed, self._observed = self._observed, {}
        for counter, amount in counts.items():
            counter.inc(amount)
        for histogram, values in observed.items():
            if len(values) == 1:
                histogram.observe(values[0])
            else:
                _observe_all(histogram, values)


def _observe_all(histogram: Any, values: list[float]) -> None:
    """`histogram.observe(v) for v in values` with one write per touched bucket (and one for
    the sum). This relies on prometheus_client's Histogram keeping per-bucket values
    (`_upper_bounds`, `_buckets`, `_sum`, as it has since 0.4); without them it observes one
    value at a time."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    per_bucket: dict[int, int] = {}
    for value in values:
        i = bisect_left(bounds, value)  # the first bound >= value, as `observe` picks it
        per_bucket[i] = per_bucket.get(i, 0) + 1
    total.inc(sum(values))
    for i, n in per_bucket.items():
        buckets[i].inc(n)
