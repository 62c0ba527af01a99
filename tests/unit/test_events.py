"""The event contract's own checks (shared/events.py): `Event.from_wire` enforces the limits
ingest enforces, so a record already in a topic that breaks them raises `InvalidEvent` (which a
consumer dead-letters) and never an error that a consumer would retry or crash on."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events import MAX_DEPTH, MAX_ID_BYTES, MAX_NAME_BYTES, Event, InvalidEvent

BASE: dict[str, Any] = {
    "messageId": "m-1",
    "type": "track",
    "userId": "u-1",
    "event": "Order Completed",
    "timestamp": "2024-05-01T12:00:00.000Z",
    "receivedAt": "2024-05-01T12:00:01.000Z",
}


def invalid(**fields: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        Event.from_wire(BASE | fields)
    return info.value


def nested(levels: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(levels - 1):
        node["k"] = {}
        node = node["k"]
    return root


def test_a_valid_event_parses() -> None:
    event = Event.from_wire(BASE | {"properties": {"revenue": 1e308}, "groupId": 9})
    assert (event.key, event.event, event.group_id) == ("u-1", "Order Completed", "9")
    assert event.properties == {"revenue": 1e308}


@pytest.mark.parametrize("field", ["userId", "anonymousId", "groupId", "previousId"])
def test_ids_over_256_bytes_or_with_nul_are_invalid(field: str) -> None:
    assert Event.from_wire(BASE | {field: "é" * 128}).raw[field] == "é" * 128  # 256 bytes
    assert invalid(**{field: "é" * 128 + "x"}).field == field
    assert str(invalid(**{field: "u" * 3000})) == f"{field}: must be at most {MAX_ID_BYTES} bytes (UTF-8)"
    assert str(invalid(**{field: "a\x00"})) == f"{field}: must not contain NUL (U+0000)"
    assert str(invalid(**{field: True})) == f"{field}: must be a string or a number"


def test_numeric_ids_are_stringified_and_measured() -> None:
    assert Event.from_wire(BASE | {"userId": 42}).user_id == "42"
    assert invalid(userId=10**300).field == "userId"  # 301 digits
    assert invalid(userId=10**5000).field == "userId"  # past int→str's own limit: still InvalidEvent
    assert str(invalid(userId=float("inf"))) == "userId: must be a finite number"


def test_event_names_and_message_ids_are_limited() -> None:
    assert Event.from_wire(BASE | {"event": "e" * MAX_NAME_BYTES}).event == "e" * 200
    assert str(invalid(event="e" * 201)) == "event: must be at most 200 bytes (UTF-8)"
    assert str(invalid(type="page", name="é" * 101)) == "name: must be at most 200 bytes (UTF-8)"
    assert str(invalid(event="E\x00")) == "event: must not contain NUL (U+0000)"
    assert str(invalid(messageId="m" * 101)) == "messageId: must be at most 100 characters"


@pytest.mark.parametrize("number", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_numbers_anywhere_are_invalid(number: float) -> None:
    assert str(invalid(properties={"items": [{"price": number}]})) == (
        "properties.items[0].price: must be a finite number"
    )
    assert invalid(context={"x": number}).field == "context.x"
    assert invalid(custom=number).field == "custom"


def test_nul_in_any_string_or_key_is_invalid() -> None:
    assert invalid(traits={"bio": "a\x00b"}).field == "traits.bio"
    assert invalid(context={"traits": {"k\x00": 1}}).field == "context.traits"
    assert invalid(**{"odd\x00key": 1}).field == "(event)"


def test_nesting_is_limited_per_top_level_field() -> None:
    assert Event.from_wire(BASE | {"properties": nested(MAX_DEPTH)}).properties == nested(MAX_DEPTH)
    error = invalid(properties=nested(MAX_DEPTH + 1))
    assert str(error) == "properties" + ".k" * MAX_DEPTH + f": nests deeper than {MAX_DEPTH} levels"


def test_wrong_shapes_are_invalid_not_crashes() -> None:
    assert invalid(context=[1]).field == "context"
    assert invalid(context={"traits": "x"}).field == "context.traits"
    assert invalid(properties="x").field == "properties"
    with pytest.raises(InvalidEvent):
        Event.from_bytes(b"[1]")


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(
        st.sampled_from(
            [
                "userId",
                "anonymousId",
                "groupId",
                "previousId",
                "event",
                "name",
                "messageId",
                "type",
                "properties",
                "traits",
                "context",
                "timestamp",
                "receivedAt",
                "extra",
            ]
        ),
        JSONISH | st.text(min_size=250, max_size=300),
    )
)
def test_from_wire_raises_nothing_but_invalid_event(fields: dict[str, Any]) -> None:
    """Whatever is in a topic, decoding either succeeds within the limits or says why."""
    try:
        event = Event.from_wire(BASE | fields)
    except InvalidEvent:
        return
    for value in (event.user_id, event.anonymous_id, event.group_id, event.previous_id):
        assert value is None or (len(value.encode()) <= MAX_ID_BYTES and "\x00" not in value)
    orjson.dumps(event.raw)  # re-encodable: finite numbers, bounded depth


def test_from_bytes_finds_what_the_raw_json_can_carry() -> None:
    """`from_bytes` skips the walk when the raw JSON cannot break a limit; when it can, it walks."""
    ok = orjson.dumps(BASE | {"properties": nested(MAX_DEPTH), "traits": {"a": "\\\\u0000 is text"}})
    assert Event.from_bytes(ok).properties == nested(MAX_DEPTH)
    with pytest.raises(InvalidEvent, match="nests deeper than 32 levels"):
        Event.from_bytes(orjson.dumps(BASE | {"properties": nested(MAX_DEPTH + 1)}))
    with pytest.raises(InvalidEvent, match=r"^traits\.bio: must not contain NUL"):
        Event.from_bytes(orjson.dumps(BASE | {"traits": {"bio": "a\x00b"}}))
    with pytest.raises(InvalidEvent, match=r"^\(event\): not valid JSON"):
        Event.from_bytes(b'{"messageId": "m", "properties": {"revenue": NaN}}')
