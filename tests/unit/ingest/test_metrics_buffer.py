"""`IterationBuffer` adds up to exactly what direct `inc`/`observe` calls would have recorded,
by the end of the loop iteration."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.ingest.metrics import IterationBuffer

BUCKETS = (0.001, 0.01, 0.1, 1.0)
VALUES = [0.0005, 0.001, 0.002, 0.01, 0.05, 0.5, 1.0, 3.0, 0.0, 0.001]


def metrics() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry()
    counter = Counter("c", "c", ["kind"], registry=registry)
    histogram = Histogram("h", "h", ["kind"], buckets=BUCKETS, registry=registry)
    return registry, counter, histogram


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


async def test_a_flushed_iteration_records_what_direct_calls_record() -> None:
    direct, d_counter, d_histogram = metrics()
    buffered, b_counter, b_histogram = metrics()
    buffer = IterationBuffer()
    for i, value in enumerate(VALUES):
        kind = "a" if i % 3 else "b"
        d_counter.labels(kind).inc(i)
        d_histogram.labels(kind).observe(value)
        buffer.inc(b_counter.labels(kind), i)
        buffer.observe(b_histogram.labels(kind), value)
    assert samples(buffered) != samples(direct)  # nothing written yet, within the iteration
    await asyncio.sleep(0)
    assert samples(buffered) == samples(direct)


async def test_a_single_observation_and_later_iterations_are_recorded_too() -> None:
    registry, counter, histogram = metrics()
    buffer = IterationBuffer()
    buffer.observe(histogram.labels("a"), 0.05)
    await asyncio.sleep(0)
    buffer.inc(counter.labels("a"))
    await asyncio.sleep(0)
    assert registry.get_sample_value("h_bucket", {"kind": "a", "le": "0.1"}) == 1
    assert registry.get_sample_value("h_bucket", {"kind": "a", "le": "0.01"}) == 0
    assert registry.get_sample_value("c_total", {"kind": "a"}) == 1


def test_without_a_running_loop_updates_are_written_at_once() -> None:
    registry, counter, _ = metrics()
    IterationBuffer().inc(counter.labels("a"), 2)
    assert registry.get_sample_value("c_total", {"kind": "a"}) == 2
