"""A broker outage: 503 (never 200) while Kafka is down, the SDKs' retries deliver everything,
and the outage costs a bounded number of log lines (and, measured by hand, little CPU).

Runs its own private broker, so stopping it does not disturb the other tests' broker.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics import Client as SegmentClient

from scripts.stack import KafkaNode
from scripts.stack.kafka import REPO_ROOT
from scripts.stack.topics import ensure_topics
from tests.conftest import eventually
from tests.integration.ingest.harness import (
    WRITE_KEY,
    IngestProcess,
    IngestServer,
    basic_auth,
    make_config,
    make_settings,
    read_topic,
    start_server,
    values,
)


@pytest.fixture
def private_kafka() -> Iterator[KafkaNode]:
    home = REPO_ROOT / ".local" / f"test-{os.getpid()}-outage-{uuid.uuid4().hex[:6]}"
    node = KafkaNode.on_free_ports(home)
    node.start()
    try:
        yield node
    finally:
        node.stop()
        shutil.rmtree(home, ignore_errors=True)


def ready_is(server: IngestServer, status: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            return (await client.get("/ready")).status_code == status

    return check


def refused_at_least(server: IngestServer, events: int) -> Callable[[], Awaitable[bool]]:
    """`userops_ingest_events_rejected_total{reason="unavailable"}` reached `events`."""

    async def check() -> bool:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            text = (await client.get("/metrics")).text
        found = re.search(r'_rejected_total\{reason="unavailable"\} (\S+)', text)
        return found is not None and float(found.group(1)) >= events

    return check


def enqueue(client: Any, prefix: str, n: int) -> list[str]:
    return [client.track(f"{prefix}-{i % 5}", "Lesson Completed", {"i": i})[1]["messageId"] for i in range(n)]


async def test_outage_answers_503_and_sdk_retries_deliver_everything_once(
    private_kafka: KafkaNode, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = f"userops.events.v1.{uuid.uuid4().hex[:8]}"
    await ensure_topics(private_kafka.bootstrap, 3, (topic,))
    settings = make_settings(private_kafka.bootstrap, topic, ingest_produce_timeout_seconds=3.0)
    server = start_server(settings, make_config())
    errors: list[Any] = []
    segment = SegmentClient(WRITE_KEY, host=server.url, on_error=lambda e, b: errors.append(e))
    rudder = RudderClient(WRITE_KEY, host=server.url, on_error=lambda e, b: errors.append(e))
    try:
        sent = enqueue(segment, "seg", 20) + enqueue(rudder, "rud", 20)
        await asyncio.to_thread(segment.flush)
        await asyncio.to_thread(rudder.flush)

        await asyncio.to_thread(private_kafka.stop)
        await eventually(ready_is(server, 503), timeout=30)
        async with httpx.AsyncClient(base_url=server.url, headers=basic_auth()) as client:
            for i in range(5):
                response = await client.post(
                    "/v1/track", content=orjson.dumps({"userId": f"direct-{i}", "event": "E"})
                )
                assert response.status_code == 503, response.text
                assert response.json()["code"] == "unavailable"
                assert response.headers["Retry-After"] == "1"

        sent += enqueue(segment, "seg-outage", 100) + enqueue(rudder, "rud-outage", 100)
        # Both SDKs tried and were refused before the broker comes back.
        await eventually(refused_at_least(server, 5 + 100 + 100), timeout=30)

        await asyncio.to_thread(private_kafka.start)
        await eventually(ready_is(server, 200), timeout=60)
        await asyncio.wait_for(asyncio.to_thread(segment.flush), timeout=90)
        await asyncio.wait_for(asyncio.to_thread(rudder.flush), timeout=90)
    finally:
        await asyncio.to_thread(segment.shutdown)
        await asyncio.to_thread(rudder.shutdown)
        server.stop()

    assert errors == []
    counts = Counter(e["messageId"] for e in values(await read_topic(private_kafka.bootstrap, topic)))
    assert set(counts) == set(sent), "events were lost"
    assert max(counts.values()) == 1, "events were duplicated"
    logs = capsys.readouterr().out
    assert "kafka_unavailable" in logs or "publish_failed" in logs
    for secret in (WRITE_KEY, "seg-outage-1", "direct-1"):
        assert secret not in logs


OUTAGE_SECONDS = 10.0
MAX_OUTAGE_LINES = 200  # the state changes and a few throttled library lines, not one per retry


async def test_an_outage_under_load_logs_a_bounded_number_of_lines_and_recovers(
    private_kafka: KafkaNode, tmp_path: Path
) -> None:
    """Batches in flight when the broker dies used to keep aiokafka's metadata loop spinning
    (tens of thousands of log lines in seconds, most of a core); requests must still get 503
    with Retry-After at once, and 200 again once the broker is back."""
    topic = f"userops.events.v1.{uuid.uuid4().hex[:8]}"
    await ensure_topics(private_kafka.bootstrap, 3, (topic,))
    ingest = IngestProcess(
        private_kafka.bootstrap,
        topic,
        tmp_path / "ingest.log",
        extra_env={
            "USEROPS_INGEST_PROBE_INTERVAL_SECONDS": "0.5",
            "USEROPS_INGEST_UNAVAILABLE_RETRY_AFTER_SECONDS": "1",
        },
    )
    await ingest.start()
    batch = {"batch": [{"type": "track", "userId": f"u{i}", "event": "E"} for i in range(50)]}
    statuses: Counter[int] = Counter()
    try:
        async with httpx.AsyncClient(base_url=ingest.url, headers=basic_auth(), timeout=30) as client:

            async def load(until: float, body: dict[str, Any], pause: float) -> None:
                while time.monotonic() < until:
                    response = await client.post(f"/v1/{'batch' if 'batch' in body else 'track'}", json=body)
                    statuses[response.status_code] += 1
                    if response.status_code == 503:
                        assert response.headers["Retry-After"] == "1"
                    await asyncio.sleep(pause)

            # The broker dies while batches are in flight.
            busy = [asyncio.create_task(load(time.monotonic() + 3, batch, 0)) for _ in range(4)]
            await asyncio.sleep(1.5)
            await asyncio.to_thread(private_kafka.stop)
            await asyncio.gather(*busy)
            assert statuses[200] > 0

            before = len(ingest.lines())
            statuses.clear()
            single = {"userId": "u", "event": "E"}
            outage_end = time.monotonic() + OUTAGE_SECONDS
            await asyncio.gather(*(load(outage_end, single, 0.02) for _ in range(4)))
            by_query = await client.post(
                "/v1/track", params={"writeKey": WRITE_KEY}, json=single, headers={"Authorization": ""}
            )
            assert by_query.status_code == 503
            during = ingest.lines()[before:]
            assert set(statuses) == {503}, statuses
            assert statuses[503] > 100  # the load really ran, and 503s came at once
            assert len(during) < MAX_OUTAGE_LINES, "\n".join(during[:50])

            await asyncio.to_thread(private_kafka.start)

            async def accepted() -> bool:
                return (await client.post("/v1/track", json=single)).status_code == 200

            await eventually(accepted, timeout=60)
    finally:
        ingest.stop()
    lines = ingest.lines()
    assert sum('"kafka_unavailable"' in line for line in lines) == 1, "one line when the outage starts"
    assert any('"kafka_available"' in line and "outage_seconds" in line for line in lines)
    assert not [line for line in lines if WRITE_KEY in line], "a write key was logged"
