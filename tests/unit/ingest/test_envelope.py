"""Validation and enrichment of Segment envelopes (services/ingest/domain/envelope.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from services.ingest.domain.envelope import Limits, OutgoingEvent, count_events, prepare_events
from services.ingest.domain.errors import InvalidRequest, PayloadTooLarge
from shared.events import MAX_DEPTH, MAX_ID_BYTES, MAX_NAME_BYTES, Event

NOW = datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
NOW_WIRE = "2024-05-01T12:00:00.250Z"


def prepare(kind: str, body: Any, limits: Limits | None = None) -> list[OutgoingEvent]:
    size = len(orjson.dumps(body))
    return prepare_events(
        kind, body, source_id="web", received_at=NOW, body_size=size, limits=limits or Limits()
    )


def one(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    (event,) = prepare(kind, body)
    parsed: dict[str, Any] = orjson.loads(event.value)
    return parsed


def batch(*items: dict[str, Any], **top: Any) -> list[dict[str, Any]]:
    return [orjson.loads(e.value) for e in prepare("batch", {"batch": list(items), **top})]


def refused(kind: str, body: Any, limits: Limits | None = None) -> str:
    with pytest.raises(InvalidRequest) as info:
        prepare(kind, body, limits)
    return info.value.message


# --- enrichment -----------------------------------------------------------------------------


def test_a_track_call_is_enriched_with_server_fields() -> None:
    ev = one("track", {"userId": "u1", "event": "Order Completed", "properties": {"total": 42}})
    assert ev["type"] == "track"
    assert ev["receivedAt"] == NOW_WIRE
    assert ev["timestamp"] == NOW_WIRE  # no client time at all: the server's
    assert ev["originalTimestamp"] == NOW_WIRE
    assert ev["sourceId"] == "web"
    assert len(ev["messageId"]) == 36  # a generated uuid4
    assert ev["properties"] == {"total": 42}


def test_every_published_event_parses_as_the_consumers_contract() -> None:
    items = [
        {"type": "track", "userId": 7, "event": "Signed Up", "timestamp": "2024-05-01T11:59:00Z"},
        {"type": "identify", "anonymousId": "a1", "traits": {"plan": "pro"}},
        {"type": "page", "userId": "u", "name": "Home", "properties": None},
        {"type": "screen", "userId": "u", "name": "Settings"},
        {"type": "group", "userId": "u", "groupId": 99, "traits": {"size": 10}},
        {"type": "alias", "userId": "u", "previousId": "a1"},
    ]
    out = prepare("batch", {"batch": items, "sentAt": "2024-05-01T11:59:30Z"})
    parsed = [Event.from_wire(orjson.loads(e.value)) for e in out]
    assert [e.type for e in parsed] == ["track", "identify", "page", "screen", "group", "alias"]
    assert [e.key.encode() for e in parsed] == [e.key for e in out]
    assert parsed[0].user_id == "7"
    assert parsed[4].group_id == "99"
    assert parsed[5].previous_id == "a1"
    assert all(e.received_at == NOW.replace(microsecond=250_000) for e in parsed)


def test_message_id_is_kept_when_given() -> None:
    assert one("identify", {"userId": "u", "messageId": "m-1"})["messageId"] == "m-1"


def test_null_or_empty_message_id_is_generated() -> None:
    first = one("identify", {"userId": "u", "messageId": None})["messageId"]
    second = one("identify", {"userId": "u", "messageId": ""})["messageId"]
    assert len(first) == len(second) == 36
    assert first != second


def test_path_type_wins_over_the_body_type() -> None:
    assert one("track", {"type": "identify", "userId": "u", "event": "E"})["type"] == "track"


def test_write_key_is_never_published() -> None:
    ev = batch({"type": "identify", "userId": "u", "writeKey": "secret"}, writeKey="secret")[0]
    assert "writeKey" not in ev
    assert b"secret" not in prepare("identify", {"userId": "u", "writeKey": "secret"})[0].value


def test_numeric_ids_become_strings_and_null_ids_are_absent() -> None:
    ev = one("identify", {"userId": 12345, "anonymousId": None})
    assert ev["userId"] == "12345"
    assert "anonymousId" not in ev
    ev = one("identify", {"userId": None, "anonymousId": 3.5})
    assert ev["anonymousId"] == "3.5"
    assert "userId" not in ev


def test_the_kafka_key_is_the_user_id_else_the_anonymous_id() -> None:
    (with_user,) = prepare("identify", {"userId": "u1", "anonymousId": "a1"})
    (anonymous,) = prepare("identify", {"userId": "", "anonymousId": "a1"})
    assert with_user.key == b"u1"
    assert anonymous.key == b"a1"


def test_batch_context_is_shallow_merged_and_the_item_wins() -> None:
    items = batch(
        {"type": "identify", "userId": "u", "context": {"ip": "1.1.1.1", "app": {"v": 2}}},
        {"type": "identify", "userId": "v"},
        context={"ip": "9.9.9.9", "library": {"name": "sdk"}, "app": {"v": 1, "build": 7}},
    )
    assert items[0]["context"] == {"ip": "1.1.1.1", "library": {"name": "sdk"}, "app": {"v": 2}}
    assert items[1]["context"] == {"ip": "9.9.9.9", "library": {"name": "sdk"}, "app": {"v": 1, "build": 7}}


def test_batch_integrations_and_sent_at_fill_in_where_the_item_has_none() -> None:
    items = batch(
        {"type": "identify", "userId": "u", "integrations": {"All": False}},
        {"type": "identify", "userId": "v", "sentAt": "2024-05-01T11:00:00Z"},
        integrations={"All": True},
        sentAt="2024-05-01T11:59:59Z",
    )
    assert items[0]["integrations"] == {"All": False}
    assert items[1]["integrations"] == {"All": True}
    assert items[0]["sentAt"] == "2024-05-01T11:59:59Z"
    assert items[1]["sentAt"] == "2024-05-01T11:00:00Z"


# --- clock skew -----------------------------------------------------------------------------


def test_timestamp_is_corrected_for_the_clients_clock_skew() -> None:
    # The client's clock is 1 h fast; the event happened 10 s before the upload.
    ev = one(
        "track",
        {
            "userId": "u",
            "event": "E",
            "timestamp": "2024-05-01T13:00:00.250Z",
            "sentAt": "2024-05-01T13:00:10.250Z",
        },
    )
    assert ev["originalTimestamp"] == "2024-05-01T13:00:00.250Z"  # kept as sent
    assert ev["timestamp"] == "2024-05-01T11:59:50.250Z"  # receivedAt - 10 s
    assert ev["receivedAt"] == NOW_WIRE


def test_skew_correction_uses_the_batch_sent_at_and_any_offsets() -> None:
    (ev,) = batch(
        {"type": "track", "userId": "u", "event": "E", "originalTimestamp": "2024-05-01T10:00:00+02:00"},
        sentAt="2024-05-01T08:00:05Z",
    )
    assert ev["originalTimestamp"] == "2024-05-01T10:00:00+02:00"
    assert ev["timestamp"] == "2024-05-01T11:59:55.250Z"


def test_without_sent_at_the_clients_timestamp_is_used_in_utc() -> None:
    ev = one("track", {"userId": "u", "event": "E", "timestamp": "2024-04-30T23:30:00.5-01:00"})
    assert ev["timestamp"] == "2024-05-01T00:30:00.500Z"
    assert "sentAt" not in ev


def test_original_timestamp_wins_over_timestamp_as_the_event_time() -> None:
    ev = one(
        "track",
        {
            "userId": "u",
            "event": "E",
            "originalTimestamp": "2024-05-01T12:00:00Z",
            "timestamp": "2024-05-01T12:00:03Z",
            "sentAt": "2024-05-01T12:00:04Z",
        },
    )
    assert ev["timestamp"] == (NOW - timedelta(seconds=4)).strftime("%Y-%m-%dT%H:%M:%S.250Z")


def test_sent_at_without_a_client_time_leaves_the_server_time() -> None:
    ev = one("identify", {"userId": "u", "sentAt": "2030-01-01T00:00:00Z"})
    assert ev["timestamp"] == ev["originalTimestamp"] == NOW_WIRE


# --- refusals -------------------------------------------------------------------------------


def test_a_missing_id_names_the_field_and_the_item_index() -> None:
    body = {"batch": [{"type": "identify", "userId": "u"}] * 3 + [{"type": "track", "event": "E"}]}
    assert refused("batch", body) == "batch[3].userId: userId or anonymousId is required"


def test_null_and_empty_ids_count_as_missing() -> None:
    message = refused("identify", {"userId": None, "anonymousId": ""})
    assert message == "userId: userId or anonymousId is required"


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        ("track", {"userId": "u"}, "event: is required for track"),
        ("track", {"userId": "u", "event": ""}, "event: is required for track"),
        ("alias", {"userId": "u", "previousId": None}, "previousId: is required for alias"),
        ("group", {"userId": "u"}, "groupId: is required for group"),
        ("identify", {"userId": True}, "userId: must be a string or a number"),
        ("identify", {"userId": {"id": 1}}, "userId: must be a string or a number"),
        ("identify", {"userId": "u", "messageId": "m" * 101}, "messageId: must be at most 100 characters"),
        ("identify", {"userId": "u", "messageId": 5}, "messageId: must be a string"),
        ("identify", {"userId": "u", "traits": [1]}, "traits: must be an object"),
        ("identify", {"userId": "u", "context": {"traits": "x"}}, "context.traits: must be an object"),
        ("page", {"userId": "u", "properties": "x"}, "properties: must be an object"),
        (
            "identify",
            {"userId": "u", "timestamp": "yesterday"},
            "timestamp: is not an ISO-8601 timestamp: 'yesterday'",
        ),
        ("identify", {"userId": "u", "sentAt": 17}, "sentAt: must be an ISO-8601 timestamp string"),
    ],
)
def test_invalid_calls_are_refused_naming_the_field(kind: str, body: dict[str, Any], message: str) -> None:
    assert refused(kind, body) == message


def test_batch_shape_errors() -> None:
    assert refused("batch", [1]) == "body: must be a JSON object"
    assert refused("batch", {"batch": {}}) == "batch: must be an array of events"
    assert refused("batch", {"batch": []}) == "batch: must contain at least one event"
    assert refused("batch", {"batch": [{"type": "identify", "userId": "u"}, "x"]}) == (
        "batch[1]: must be a JSON object"
    )
    assert refused("batch", {"batch": [{"type": "click", "userId": "u"}]}).startswith(
        "batch[0].type: must be one of alias, group, identify"
    )
    assert refused("batch", {"batch": [{"type": "identify", "userId": "u"}], "context": 3}) == (
        "context: must be an object"
    )


def test_absurd_client_clocks_are_refused_not_crashed_on() -> None:
    body = {
        "userId": "u",
        "event": "E",
        "timestamp": "0001-01-01T00:00:00Z",
        "sentAt": "9999-12-31T23:59:59Z",
    }
    assert refused("track", body).startswith("timestamp: is out of range (client clock)")


def test_nesting_deeper_than_the_limit_is_a_400_naming_the_path() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(40):
        node["a"] = {}
        node = node["a"]
    message = refused("identify", {"userId": "u", "traits": deep})
    assert message == "traits" + ".a" * MAX_DEPTH + f": nests deeper than {MAX_DEPTH} levels"


def nested(levels: int) -> dict[str, Any]:
    """An object that is `levels` objects deep, itself included."""
    root: dict[str, Any] = {}
    node = root
    for _ in range(levels - 1):
        node["k"] = {}
        node = node["k"]
    return root


def test_nesting_up_to_the_limit_is_accepted_in_every_object_field() -> None:
    body = {"userId": "u", "event": "E", "properties": nested(MAX_DEPTH)}
    body |= {"context": nested(MAX_DEPTH), "integrations": nested(MAX_DEPTH)}
    assert one("track", body)["properties"] == nested(MAX_DEPTH)
    for field in ("properties", "context", "integrations", "custom"):
        over = {"type": "track", "userId": "u", "event": "E", field: nested(MAX_DEPTH + 1)}
        assert refused("batch", {"batch": [{"type": "identify", "userId": "u"}, over]}) == (
            f"batch[1].{field}" + ".k" * MAX_DEPTH + f": nests deeper than {MAX_DEPTH} levels"
        )
    # Arrays count as levels too, and the batch's shared context is checked once, by name.
    deep_list: list[Any] = []
    for _ in range(MAX_DEPTH):
        deep_list = [deep_list]
    assert refused("identify", {"userId": "u", "traits": {"l": deep_list}}).endswith(
        f"nests deeper than {MAX_DEPTH} levels"
    )
    shared_context = {"batch": [{"type": "identify", "userId": "u"}], "context": nested(MAX_DEPTH + 1)}
    assert refused("batch", shared_context).startswith("context.k.k")


# --- contract limits (DESIGN.md §2: nothing acknowledged may fail a consumer) ---------------


@pytest.mark.parametrize("field", ["userId", "anonymousId", "groupId", "previousId"])
def test_ids_are_limited_to_256_bytes_of_utf8_naming_the_field_and_index(field: str) -> None:
    base = {"type": "alias", "userId": "u", "previousId": "p", "groupId": "g"}
    # 64 four-byte characters are exactly 256 bytes: accepted; one more byte is refused.
    at_limit = "\U0001f600" * 64
    assert len(at_limit.encode()) == MAX_ID_BYTES == 256
    (ok,) = batch(base | {field: at_limit})
    assert ok[field] == at_limit
    over = "é" * 128 + "x"  # 129 characters, 257 bytes
    body = {"batch": [base, base, base | {field: over}]}
    assert refused("batch", body) == f"batch[2].{field}: must be at most 256 bytes (UTF-8)"
    assert refused("batch", {"batch": [base | {field: "u" * 3000}]}) == (
        f"batch[0].{field}: must be at most 256 bytes (UTF-8)"
    )


def test_numeric_ids_are_measured_and_checked_once_stringified() -> None:
    assert one("identify", {"userId": 10**18})["userId"] == str(10**18)
    assert one("group", {"userId": "u", "groupId": 1.5})["groupId"] == "1.5"
    assert one("identify", {"userId": "u", "previousId": 7})["previousId"] == "7"
    assert one("identify", {"userId": 1e300})["userId"] == "1e+300"
    assert refused("identify", {"userId": float("nan")}) == "userId: must be a string or a number"


@pytest.mark.parametrize(
    "field", ["userId", "anonymousId", "groupId", "previousId", "event", "name", "messageId"]
)
def test_nul_is_refused_in_ids_names_and_message_ids(field: str) -> None:
    body = {"userId": "u", "anonymousId": "a", "event": "E", "name": "N", "groupId": "g", "previousId": "p"}
    assert refused("track", body | {field: "a\x00b"}) == f"{field}: must not contain NUL (U+0000)"


def test_nul_is_refused_anywhere_in_the_event_naming_the_path() -> None:
    item = {"type": "identify", "userId": "u", "traits": {"plan": "pro", "tags": ["a", "b\x00"]}}
    assert refused("batch", {"batch": [{"type": "identify", "userId": "u"}, item]}) == (
        "batch[1].traits.tags[1]: must not contain NUL (U+0000)"
    )
    assert refused("identify", {"userId": "u", "traits": {"k\x00": 1}}).startswith(
        "traits: keys must be strings without NUL"
    )
    assert refused("identify", {"userId": "u", "channel": "web\x00"}) == (
        "channel: must not contain NUL (U+0000)"
    )


def test_event_and_page_names_are_limited_to_200_bytes() -> None:
    assert one("track", {"userId": "u", "event": "e" * MAX_NAME_BYTES})["event"] == "e" * 200
    assert refused("track", {"userId": "u", "event": "é" * 101}) == (
        "event: must be at most 200 bytes (UTF-8)"
    )
    assert refused("batch", {"batch": [{"type": "screen", "userId": "u", "name": "n" * 201}]}) == (
        "batch[0].name: must be at most 200 bytes (UTF-8)"
    )


def test_odd_finite_numbers_and_number_like_strings_are_published_as_sent() -> None:
    # Non-finite numbers never get this far: the parser refuses them (test_body.py).
    ev = one("track", {"userId": "u", "event": "E", "properties": {"revenue": "NaN", "big": 1e308}})
    assert ev["properties"] == {"revenue": "NaN", "big": 1e308}


# --- size limits ----------------------------------------------------------------------------


def test_an_event_over_the_per_event_limit_is_413() -> None:
    limits = Limits(max_event_bytes=1000, max_request_bytes=10_000)
    with pytest.raises(
        PayloadTooLarge, match=r"event: \d+ bytes as published is over the per-event limit of 1000"
    ):
        prepare("track", {"userId": "u", "event": "E", "properties": {"x": "y" * 1600}}, limits)


def test_what_ingest_adds_does_not_count_against_the_limit() -> None:
    limits = Limits(max_event_bytes=1000, max_request_bytes=10_000)
    body = {"userId": "u", "event": "E", "properties": {"x": "y" * 950}}
    assert 990 < len(orjson.dumps(body)) <= 1000  # just under the limit as the client sent it
    (event,) = prepare("track", body, limits)
    assert len(event.value) > 1000


def test_an_oversize_item_in_a_batch_is_named_by_index() -> None:
    limits = Limits(max_event_bytes=1000, max_request_bytes=10_000)
    small = {"type": "identify", "userId": "u"}
    big = {"type": "identify", "userId": "u", "traits": {"bio": "x" * 1600}}
    with pytest.raises(PayloadTooLarge, match=r"batch\[2\]: \d+ bytes as published is over the per-event"):
        prepare("batch", {"batch": [small, small, big]}, limits)
    # Many small items in a body bigger than the per-event limit are fine.
    assert len(prepare("batch", {"batch": [small] * 60}, limits)) == 60


def test_the_shared_batch_context_counts_towards_each_event() -> None:
    limits = Limits(max_event_bytes=1000, max_request_bytes=10_000)
    body = {"batch": [{"type": "identify", "userId": "u"}], "context": {"page": "p" * 1600}}
    with pytest.raises(PayloadTooLarge, match=r"batch\[0\]: "):
        prepare("batch", body, limits)


def test_merging_the_batch_context_may_not_blow_a_request_up_without_bound() -> None:
    limits = Limits(max_event_bytes=1000, max_request_bytes=10_000)
    body = {"batch": [{"type": "identify", "userId": "u"}] * 100, "context": {"page": "p" * 600}}
    assert len(orjson.dumps(body)) < 10_000
    with pytest.raises(PayloadTooLarge, match=r"exceed 40000 bytes \(at item \d+\)"):
        prepare("batch", body, limits)


def test_too_many_events_in_one_batch_is_413() -> None:
    limits = Limits(max_batch_events=3)
    with pytest.raises(PayloadTooLarge, match="4 events is over the limit of 3"):
        prepare("batch", {"batch": [{"type": "identify", "userId": "u"}] * 4}, limits)


def test_count_events() -> None:
    assert count_events("track", {}) == 1
    assert count_events("batch", {"batch": [1, 2, 3]}) == 3
    assert count_events("batch", {"batch": "x"}) == 1
    assert count_events("batch", []) == 1
