"""The HTTP contract against a real server and a real broker: what is published, what is refused."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from services.ingest.config import LimitsConfig, RateLimitConfig
from shared.events import Event
from tests.conftest import Stack
from tests.integration.ingest.harness import (
    DISABLED_KEY,
    WRITE_KEY,
    IngestServer,
    basic_auth,
    make_config,
    make_settings,
    read_topic,
    start_server,
)

AUTH = basic_auth()


async def post(server: IngestServer, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", AUTH)}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        return await client.post(path, content=content, headers=headers, **kwargs)


def refusal(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"code", "message"}
    return response.status_code, body["code"], body["message"]


async def test_a_track_call_is_acknowledged_only_once_it_is_in_kafka(
    stack: Stack, ingest: IngestServer, events_topic: str
) -> None:
    sent_at = datetime.now(UTC)
    happened = sent_at - timedelta(seconds=30)
    response = await post(
        ingest,
        "/v1/track",
        {
            "userId": "user-42",
            "event": "Order Completed",
            "properties": {"revenue": 42.5},
            "messageId": "m-1",
            "timestamp": happened.isoformat(),
            "sentAt": sent_at.isoformat(),
        },
    )
    assert (response.status_code, response.content) == (200, b'{"success":true}')
    (record,) = await read_topic(stack.bootstrap, events_topic)
    assert record.key == b"user-42"
    event = Event.from_wire(orjson.loads(record.value))
    assert (event.message_id, event.type, event.user_id, event.event) == (
        "m-1",
        "track",
        "user-42",
        "Order Completed",
    )
    assert event.properties == {"revenue": 42.5}
    assert event.raw["sourceId"] == "test"
    assert "writeKey" not in event.raw
    # Clock-skew correction: 30 s before the server received it.
    assert abs((event.received_at - event.timestamp).total_seconds() - 30) < 0.01
    assert abs((datetime.now(UTC) - event.received_at).total_seconds()) < 10


async def test_every_call_type_and_a_batch_are_published_keyed_by_user(
    stack: Stack, ingest: IngestServer, events_topic: str
) -> None:
    calls = {
        "identify": {"userId": "u1", "traits": {"plan": "pro"}},
        "page": {"anonymousId": "a1", "name": "Pricing"},
        "screen": {"userId": "u1", "name": "Home"},
        "group": {"userId": "u1", "groupId": "g1"},
        "alias": {"userId": "u1", "previousId": "a1"},
    }
    for kind, body in calls.items():
        assert (await post(ingest, f"/v1/{kind}", body)).status_code == 200
    batch = {
        "batch": [
            {"type": "track", "userId": "u2", "event": "Signed Up", "context": {"ip": "10.0.0.1"}},
            {"type": "track", "userId": 3, "anonymousId": None, "event": "Signed Up"},
        ],
        "context": {"library": {"name": "test"}, "ip": "10.9.9.9"},
        "sentAt": datetime.now(UTC).isoformat(),
    }
    assert (await post(ingest, "/v1/batch", batch)).status_code == 200

    records = await read_topic(stack.bootstrap, events_topic)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        event = orjson.loads(record.value)
        Event.from_wire(event)
        assert record.key == (event.get("userId") or event["anonymousId"]).encode()
        by_type.setdefault(event["type"], []).append(event)
    assert sorted(by_type) == ["alias", "group", "identify", "page", "screen", "track"]
    first, second = sorted(by_type["track"], key=lambda e: e["userId"] != "u2")
    assert first["context"] == {"library": {"name": "test"}, "ip": "10.0.0.1"}
    assert second["context"] == {"library": {"name": "test"}, "ip": "10.9.9.9"}
    assert second["userId"] == "3"
    assert "anonymousId" not in second
    assert first["sentAt"] == second["sentAt"] == batch["sentAt"]


async def test_the_write_key_may_come_in_the_body_or_the_query(
    stack: Stack, ingest: IngestServer, events_topic: str
) -> None:
    body = {"userId": "u", "writeKey": WRITE_KEY}
    assert (await post(ingest, "/v1/identify", body, headers={})).status_code == 200
    query = {"writeKey": WRITE_KEY}
    ok = await post(ingest, "/v1/identify", {"userId": "v"}, headers={}, params=query)
    assert ok.status_code == 200
    assert len(await read_topic(stack.bootstrap, events_topic)) == 2


@pytest.mark.parametrize(
    ("headers", "params", "body", "message"),
    [
        ({}, None, {"userId": "u"}, "a write key is required"),
        (basic_auth("nope"), None, {"userId": "u"}, "invalid write key"),
        ({}, {"writeKey": "nope"}, {"userId": "u"}, "invalid write key"),
        ({}, None, {"userId": "u", "writeKey": "nope"}, "invalid write key"),
        (basic_auth(DISABLED_KEY), None, {"userId": "u"}, "the source of this write key is disabled"),
        ({"Authorization": "Bearer x"}, None, {"userId": "u"}, "Authorization: only HTTP Basic"),
    ],
)
async def test_missing_unknown_and_disabled_keys_are_401(
    stack: Stack,
    ingest: IngestServer,
    events_topic: str,
    headers: dict[str, str],
    params: dict[str, str] | None,
    body: dict[str, Any],
    message: str,
) -> None:
    response = await post(ingest, "/v1/identify", body, headers=headers, params=params)
    status, code, text = refusal(response)
    assert (status, code) == (401, "unauthorized")
    assert text.startswith(message)
    assert await read_topic(stack.bootstrap, events_topic) == []


async def test_invalid_requests_are_400_naming_field_and_index_and_publish_nothing(
    stack: Stack, ingest: IngestServer, events_topic: str
) -> None:
    good = {"type": "track", "userId": "u", "event": "E"}
    cases = [
        ("/v1/batch", b'{"batch": [', "body: malformed JSON"),
        ("/v1/track", b"", "body: must be a JSON object"),
        ("/v1/track", b"[]", "body: must be a JSON object"),
        (
            "/v1/batch",
            {"batch": [good, good, good, {"type": "track", "event": "E"}]},
            "batch[3].userId: userId or anonymousId is required",
        ),
        (
            "/v1/batch",
            {"batch": [good, {"type": "track", "userId": None, "anonymousId": None, "event": "E"}]},
            "batch[1].userId: userId or anonymousId is required",
        ),
        ("/v1/track", {"userId": "u"}, "event: is required for track"),
        ("/v1/alias", {"userId": "u"}, "previousId: is required for alias"),
        ("/v1/group", {"userId": "u"}, "groupId: is required for group"),
        ("/v1/identify", {"userId": "u", "messageId": "x" * 101}, "messageId: must be at most 100"),
        ("/v1/batch", {"batch": [good, {"type": "visit", "userId": "u"}]}, "batch[1].type: must be one of"),
        # The contract's limits (DESIGN.md §2): what a consumer could not store is refused here.
        (
            "/v1/batch",
            {"batch": [good, good, {"type": "identify", "userId": "u" * 3000}]},
            "batch[2].userId: must be at most 256 bytes (UTF-8)",
        ),
        ("/v1/alias", {"userId": "u", "previousId": "a\x00"}, "previousId: must not contain NUL"),
        ("/v1/track", {"userId": "u", "event": "e" * 201}, "event: must be at most 200 bytes"),
        (
            "/v1/batch",
            b'{"batch": [{"type": "track", "userId": "u", "event": "E"}, '
            b'{"type": "track", "userId": "u", "event": "Order", "properties": {"revenue": 1e400}}]}',
            "batch[1].properties.revenue: must be a finite number",
        ),
        (
            "/v1/track",
            b'{"userId": "u", "event": "E", "properties": {"x": NaN}}',
            "properties.x: must be a finite",
        ),
    ]
    for path, body, message in cases:
        status, code, text = refusal(await post(ingest, path, body))
        assert (status, code) == (400, "invalid_request"), (path, body)
        assert text.startswith(message), text
    assert await read_topic(stack.bootstrap, events_topic) == []  # all or nothing per request


async def test_gzip_bodies_are_accepted(stack: Stack, ingest: IngestServer, events_topic: str) -> None:
    body = gzip.compress(
        orjson.dumps({"batch": [{"type": "identify", "userId": f"u{i}"} for i in range(50)]})
    )
    response = await post(ingest, "/v1/batch", body, headers={**AUTH, "Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert len(await read_topic(stack.bootstrap, events_topic)) == 50


async def test_oversize_events_and_requests_are_413_also_when_gzipped(
    stack: Stack, ingest: IngestServer, events_topic: str
) -> None:
    big_event = {"userId": "u", "traits": {"bio": "x" * 34_000}}
    status, code, text = refusal(await post(ingest, "/v1/identify", big_event))
    assert (status, code) == (413, "payload_too_large")
    assert "per-event limit of 32768" in text

    items = [{"type": "identify", "userId": "u", "traits": {"bio": "x" * 20_000}} for _ in range(30)]
    too_many_bytes = orjson.dumps({"batch": items})  # 600 KB of small-enough events
    status, code, text = refusal(await post(ingest, "/v1/batch", too_many_bytes))
    assert (status, code) == (413, "payload_too_large")
    assert "over the limit of 512000 bytes" in text

    gzipped = gzip.compress(too_many_bytes)
    assert len(gzipped) < 10_000  # small on the wire, over the limit once decompressed
    response = await post(ingest, "/v1/batch", gzipped, headers={**AUTH, "Content-Encoding": "gzip"})
    assert refusal(response)[:2] == (413, "payload_too_large")

    bomb = gzip.compress(b" " * 100_000_000)
    response = await post(ingest, "/v1/batch", bomb, headers={**AUTH, "Content-Encoding": "gzip"})
    assert refusal(response)[:2] == (413, "payload_too_large")

    oversize_item = gzip.compress(orjson.dumps({"batch": [big_event | {"type": "identify"}]}))
    response = await post(ingest, "/v1/batch", oversize_item, headers={**AUTH, "Content-Encoding": "gzip"})
    status, _, text = refusal(response)
    assert status == 413
    assert text.startswith("batch[0]:")
    assert await read_topic(stack.bootstrap, events_topic) == []


async def test_a_batch_over_the_event_count_limit_is_413(stack: Stack, events_topic: str) -> None:
    server = start_server(
        make_settings(stack.bootstrap, events_topic), make_config(limits=LimitsConfig(max_batch_events=5))
    )
    try:
        response = await post(server, "/v1/batch", {"batch": [{"type": "identify", "userId": "u"}] * 6})
        assert refusal(response) == (
            413,
            "payload_too_large",
            "batch: 6 events is over the limit of 5 per request",
        )
    finally:
        server.stop()


async def test_the_rate_limit_answers_429_with_retry_after(stack: Stack, events_topic: str) -> None:
    limits = RateLimitConfig(enabled=True, events_per_second=0.5, burst=3)
    server = start_server(make_settings(stack.bootstrap, events_topic), make_config(rate_limit=limits))
    try:
        three = {"batch": [{"type": "identify", "userId": "u"}] * 3}
        assert (await post(server, "/v1/batch", three)).status_code == 200
        response = await post(server, "/v1/identify", {"userId": "u"})
        assert refusal(response)[:2] == (429, "rate_limited")
        assert response.headers["Retry-After"] == "2"
    finally:
        server.stop()
    assert len(await read_topic(stack.bootstrap, events_topic)) == 3


async def test_errors_of_the_framework_also_speak_code_and_message(ingest: IngestServer) -> None:
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        wrong_method = await client.get("/v1/track")
        unknown = await client.post("/v2/track", content=b"{}")
    assert refusal(wrong_method)[:2] == (405, "method_not_allowed")
    assert refusal(unknown)[:2] == (404, "not_found")


async def test_health_ready_metrics_and_docs(ingest: IngestServer) -> None:
    user_id = "metrics-user-123"
    await post(ingest, "/v1/identify", {"userId": user_id})
    await post(ingest, "/v1/identify", {"userId": user_id}, headers=basic_auth("wrong-key-xyz"))
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/ready")).json() == {"status": "ready"}
        metrics = (await client.get("/metrics")).text
        openapi = (await client.get("/openapi.json")).json()
        assert (await client.get("/docs")).status_code == 200
    for line in [
        'userops_http_requests_total{method="POST",route="/v1/identify",status="200"} 1.0',
        'userops_http_requests_total{method="POST",route="/v1/identify",status="401"} 1.0',
        'userops_ingest_events_accepted_total{type="identify"} 1.0',
        'userops_ingest_events_rejected_total{reason="unauthorized"} 1.0',
        "userops_ingest_produce_duration_seconds_count 1.0",
        'userops_ingest_batch_size_bucket{le="1.0"} 1.0',
        'userops_http_request_duration_seconds_count{method="POST",route="/v1/identify"} 2.0',
    ]:
        assert line in metrics
    assert user_id not in metrics
    assert WRITE_KEY not in metrics
    assert "wrong-key-xyz" not in metrics
    batch_body = openapi["paths"]["/v1/batch"]["post"]["requestBody"]["content"]["application/json"]
    assert batch_body["schema"] == {"$ref": "#/components/schemas/BatchRequest"}
    assert "TrackCall" in openapi["components"]["schemas"]


async def test_without_a_reachable_broker_ready_and_ingest_answer_503(events_topic: str) -> None:
    from scripts.stack.procs import free_port

    server = start_server(make_settings(f"127.0.0.1:{free_port()}", events_topic), make_config())
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            ready = await client.get("/ready")
        assert ready.status_code == 503
        response = await post(server, "/v1/identify", {"userId": "u"})
        assert refusal(response)[:2] == (503, "unavailable")
        assert response.headers["Retry-After"] == "1"
    finally:
        server.stop()
