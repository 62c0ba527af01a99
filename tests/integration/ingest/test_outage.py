"""A broker outage: 503 (never 200) while Kafka is down, and the SDKs' retries deliver everything.

Runs its own private broker, so stopping it does not disturb the other tests' broker.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
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
    assert "publish_failed" in logs or "kafka_availability_changed" in logs
    for secret in (WRITE_KEY, "seg-outage-1", "direct-1"):
        assert secret not in logs
