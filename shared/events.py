"""The event contract on `userops.events.v1` (DESIGN.md §2): a Segment envelope as enriched by ingest.

On the wire an event is one JSON object with Segment's camelCase keys. Ingest guarantees, for every
event it publishes: `messageId` (≤ 100 chars), `type`, at least one of `userId`/`anonymousId` (as
non-empty strings), and ISO-8601 UTC `timestamp`, `receivedAt` and `originalTimestamp`. The Kafka
key is `partition_key(event)`. Consumers parse with `Event.from_wire`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

EVENT_TYPES: Final = frozenset({"track", "identify", "page", "screen", "group", "alias"})
MAX_MESSAGE_ID_LEN: Final = 100


class InvalidEvent(ValueError):
    """An event that breaks the contract; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def format_ts(ts: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a `Z`, as Segment writes timestamps."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_ts(value: Any, field_name: str) -> datetime:
    """Parse an ISO-8601 timestamp; naive values are taken as UTC."""
    if not isinstance(value, str) or not value:
        raise InvalidEvent(field_name, "must be an ISO-8601 timestamp string")
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        ts = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidEvent(field_name, f"is not an ISO-8601 timestamp: {value[:40]!r}") from exc
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def partition_key(event: dict[str, Any]) -> str:
    """The Kafka key of every userops topic: `userId`, else `anonymousId`."""
    key = event.get("userId") or event.get("anonymousId")
    if not key:
        raise InvalidEvent("userId", "userId or anonymousId is required")
    return str(key)


@dataclass(frozen=True, slots=True)
class Event:
    """A parsed event as consumers see it. `raw` keeps the whole wire object."""

    message_id: str
    type: str
    user_id: str | None
    anonymous_id: str | None
    timestamp: datetime
    received_at: datetime
    event: str | None = None
    name: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    previous_id: str | None = None
    group_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def key(self) -> str:
        return self.user_id or self.anonymous_id or ""

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Event:
        if not isinstance(data, dict):
            raise InvalidEvent("(event)", "must be a JSON object")
        message_id = data.get("messageId")
        if not isinstance(message_id, str) or not message_id:
            raise InvalidEvent("messageId", "is required")
        etype = data.get("type")
        if etype not in EVENT_TYPES:
            raise InvalidEvent("type", f"must be one of {sorted(EVENT_TYPES)}")
        user_id = _opt_id(data, "userId")
        anonymous_id = _opt_id(data, "anonymousId")
        if user_id is None and anonymous_id is None:
            raise InvalidEvent("userId", "userId or anonymousId is required")
        properties = data.get("properties") or {}
        traits = data.get("traits") or (data.get("context") or {}).get("traits") or {}
        context = data.get("context") or {}
        for fname, value in (("properties", properties), ("traits", traits), ("context", context)):
            if not isinstance(value, dict):
                raise InvalidEvent(fname, "must be an object")
        ev_name = data.get("event")
        if etype == "track" and (not isinstance(ev_name, str) or not ev_name):
            raise InvalidEvent("event", "is required for track")
        return cls(
            message_id=message_id,
            type=etype,
            user_id=user_id,
            anonymous_id=anonymous_id,
            timestamp=parse_ts(data.get("timestamp"), "timestamp"),
            received_at=parse_ts(data.get("receivedAt") or data.get("timestamp"), "receivedAt"),
            event=ev_name if isinstance(ev_name, str) else None,
            name=data.get("name") if isinstance(data.get("name"), str) else None,
            properties=properties,
            traits=traits,
            context=context,
            previous_id=_opt_id(data, "previousId"),
            group_id=_opt_id(data, "groupId"),
            raw=data,
        )

    @classmethod
    def from_bytes(cls, value: bytes) -> Event:
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent("(event)", f"not valid JSON: {exc}") from exc
        return cls.from_wire(data)


def _opt_id(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise InvalidEvent(name, "must be a string")
    return value
