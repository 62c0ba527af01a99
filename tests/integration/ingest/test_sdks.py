"""The unmodified Segment and RudderStack Python SDKs deliver every event exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from rudderstack.analytics.client import Client as RudderClient
from segment.analytics import Client as SegmentClient

from tests.conftest import Stack
from tests.integration.ingest.harness import WRITE_KEY, IngestServer, read_topic, values

EVENTS = 300


def send_all(client: Any) -> list[str]:
    """A few hundred calls of every kind; returns the messageIds the SDK assigned."""
    ids = []
    for i in range(EVENTS):
        user = f"user-{i % 17}"
        if i % 5 == 0:
            _, msg = client.identify(user, {"email_domain": "example.com", "n": i})
        elif i % 7 == 0:
            _, msg = client.page(anonymous_id=f"anon-{i}", name="Pricing", properties={"n": i})
        else:
            _, msg = client.track(user, "Lesson Completed", {"lesson": i, "minutes": 3.5})
        ids.append(msg["messageId"])
    client.flush()
    return ids


async def assert_delivered_once(stack: Stack, topic: str, ids: list[str], errors: list[Any]) -> None:
    assert errors == []
    assert len(set(ids)) == EVENTS
    events = values(await read_topic(stack.bootstrap, topic))
    counts = Counter(e["messageId"] for e in events)
    assert set(counts) == set(ids), "lost or unknown events"
    assert max(counts.values()) == 1, "duplicated events"
    assert {e["sourceId"] for e in events} == {"test"}


async def test_segment_sdk_delivers_every_event_exactly_once(
    stack: Stack, ingest: IngestServer, events_topic: str
) -> None:
    errors: list[Any] = []
    client = SegmentClient(WRITE_KEY, host=ingest.url, on_error=lambda e, batch: errors.append(e))
    try:
        ids = await asyncio.to_thread(send_all, client)
    finally:
        await asyncio.to_thread(client.shutdown)
    await assert_delivered_once(stack, events_topic, ids, errors)


async def test_rudderstack_sdk_with_gzip_delivers_every_event_exactly_once(
    stack: Stack, ingest: IngestServer, events_topic: str
) -> None:
    errors: list[Any] = []
    client = RudderClient(WRITE_KEY, host=ingest.url, on_error=lambda e, batch: errors.append(e))
    assert client.gzip  # the SDK's default
    try:
        ids = await asyncio.to_thread(send_all, client)
    finally:
        await asyncio.to_thread(client.shutdown)
    await assert_delivered_once(stack, events_topic, ids, errors)
    events = values(await read_topic(stack.bootstrap, events_topic))
    assert {e["channel"] for e in events} == {"server"}  # RudderStack's own field survives
