"""Event times outside [1970-01-01, 3000-01-01) are refused by ingest and by the event contract.

An event whose `timestamp` was 0001-01-01 was acknowledged by ingest and then crashed the
rewards consumer on every attempt (`OverflowError: date value out of range` where it counts
days back from the event's date), stopping rewards for every user; 9999-12-31 overflowed
`userops rewards simulate` and `userops replay` in the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from services.ingest.domain.envelope import Limits, prepare_events
from services.ingest.domain.errors import InvalidRequest
from shared.events import Event, InvalidEvent

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OUT_OF_RANGE = [
    "0001-01-01T00:00:00Z",
    "1969-12-31T23:59:59.999Z",
    "3000-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
]


def _ingest(body: dict[str, Any]) -> dict[str, Any]:
    (event,) = prepare_events(
        "track", body, source_id="web", received_at=NOW, body_size=len(orjson.dumps(body)), limits=Limits()
    )
    parsed: dict[str, Any] = orjson.loads(event.value)
    return parsed


@pytest.mark.parametrize("timestamp", OUT_OF_RANGE)
def test_ingest_refuses_an_event_time_out_of_range_naming_the_field(timestamp: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        _ingest({"userId": "u", "event": "Lesson Completed", "timestamp": timestamp})
    assert info.value.message.startswith("timestamp: is out of range (client clock)")
    assert "1970-01-01" in info.value.message


def test_ingest_refuses_a_skew_correction_that_lands_out_of_range() -> None:
    body = {
        "userId": "u",
        "event": "E",
        "timestamp": "2026-01-01T00:00:00Z",
        "sentAt": "2999-12-31T00:00:00Z",
    }
    with pytest.raises(InvalidRequest, match="timestamp: is out of range"):
        _ingest(body)


def test_the_edges_of_the_range_are_accepted() -> None:
    assert _ingest({"userId": "u", "event": "E", "timestamp": "1970-01-01T00:00:00Z"})["timestamp"] == (
        "1970-01-01T00:00:00.000Z"
    )
    assert _ingest({"userId": "u", "event": "E", "timestamp": "2999-12-31T23:59:59Z"})[
        "timestamp"
    ].startswith("2999")


@pytest.mark.parametrize("timestamp", OUT_OF_RANGE)
def test_the_contract_refuses_an_event_time_out_of_range(timestamp: str) -> None:
    wire = {"type": "track", "userId": "u", "event": "E", "messageId": "m", "timestamp": timestamp}
    with pytest.raises(InvalidEvent, match="timestamp"):
        Event.from_wire({**wire, "receivedAt": "2026-12-01T00:00:00Z"})
