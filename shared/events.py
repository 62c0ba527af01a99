"""The event contract on `userops.events.v1` (DESIGN.md §2): a Segment envelope as enriched by ingest.

On the wire an event is one JSON object with Segment's camelCase keys. Ingest guarantees, for every
event it publishes: `messageId` (≤ 100 chars), `type`, at least one of `userId`/`anonymousId` (as
non-empty strings), and ISO-8601 UTC `timestamp`, `receivedAt` and `originalTimestamp`. The Kafka
key is `partition_key(event)`. Consumers parse with `Event.from_wire`.

Limits, enforced by ingest (400) and again by `Event.from_wire` (an `InvalidEvent`, which a
consumer dead-letters), so that nothing ingest acknowledges can fail a consumer's store:
- ids (`userId`, `anonymousId`, `groupId`, `previousId`): at most `MAX_ID_BYTES` bytes of UTF-8;
- event names (`event` of a track, `name` of a page or screen): at most `MAX_NAME_BYTES` bytes;
- `messageId`: at most `MAX_MESSAGE_ID_LEN` characters;
- no string anywhere in the event (ids, names, keys, values) contains U+0000, which PostgreSQL
  `text` and `jsonb` cannot store;
- every number is finite (JSON has no NaN or Infinity; a literal like `1e400` overflows);
- no value nests deeper than `MAX_DEPTH` objects/arrays below its top-level field;
- `timestamp` and `receivedAt` lie in [`MIN_TIMESTAMP`, `MAX_TIMESTAMP`): the consumers add and
  subtract days, weeks and years to event times, which a date near year 1 or 9999 overflows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from math import isfinite
from typing import Any, Final

import orjson

EVENT_TYPES: Final = frozenset({"track", "identify", "page", "screen", "group", "alias"})
MAX_MESSAGE_ID_LEN: Final = 100
"""Characters of `messageId`."""
MAX_ID_BYTES: Final = 256
"""UTF-8 bytes of `userId`, `anonymousId`, `groupId` and `previousId` (once stringified)."""
MAX_NAME_BYTES: Final = 200
"""UTF-8 bytes of a track's `event` and a page's or screen's `name`."""
MAX_DEPTH: Final = 32
"""Objects/arrays a value may nest below its top-level field (`properties` itself is level 1)."""
ID_FIELDS: Final = ("userId", "anonymousId", "groupId", "previousId")
_NUL: Final = "\x00"
MIN_TIMESTAMP: Final = datetime(1970, 1, 1, tzinfo=UTC)
"""The earliest event time (inclusive)."""
MAX_TIMESTAMP: Final = datetime(3000, 1, 1, tzinfo=UTC)
"""The first event time past the range (exclusive)."""
TIMESTAMP_RANGE: Final = "must be from 1970-01-01 up to (not including) 3000-01-01"


class InvalidEvent(ValueError):
    """An event that breaks the contract; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_id(name: str, value: Any) -> str | None:
    """An id as a non-empty string, or None when absent (JSON null or ""). Numbers are
    stringified (`7` → `"7"`); anything else, an overlong id or one containing NUL is refused."""
    if value is None or value == "":
        return None
    if type(value) is not str:
        if type(value) is int or (type(value) is float and isfinite(value)):
            if type(value) is int and value.bit_length() > 4 * MAX_ID_BYTES:
                raise InvalidEvent(name, f"must be at most {MAX_ID_BYTES} bytes")
            value = str(value)
        else:
            raise InvalidEvent(name, "must be a string or a number")
    text: str = value
    check_text(name, text, MAX_ID_BYTES)
    return text


def check_text(name: str, value: str, max_bytes: int) -> None:
    """Refuse a string longer than `max_bytes` in UTF-8, or containing NUL."""
    # A character is at most 4 bytes: short strings need no encoding to be measured.
    if len(value) * 4 > max_bytes and len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        raise InvalidEvent(name, f"must be at most {max_bytes} bytes (UTF-8)")
    if _NUL in value:
        raise InvalidEvent(name, "must not contain NUL (U+0000)")


def check_value(name: str, value: Any) -> None:
    """Refuse a non-finite number, a NUL in any string or key, or nesting deeper than
    `MAX_DEPTH`, anywhere in `value` (a top-level field's value; `name` is that field's path).
    The `InvalidEvent` names the offending path, e.g. `properties.items[2].price`."""
    if _suspect(value, 0):
        found = _find(value, name, 0)
        if found is not None:
            raise InvalidEvent(*found)


def _suspect(value: Any, depth: int) -> bool:
    """Fast scan: could `value` break a limit? (Exact types: this runs per event at ingest.)"""
    kind = type(value)
    if kind is str:
        return _NUL in value
    if kind is float:
        return not isfinite(value)
    if kind is dict:
        if depth >= MAX_DEPTH:
            return True
        for key, item in value.items():
            if type(key) is not str or _NUL in key or _suspect(item, depth + 1):
                return True
    elif kind is list:
        if depth >= MAX_DEPTH:
            return True
        for item in value:
            if _suspect(item, depth + 1):
                return True
    return False


def _find(value: Any, path: str, depth: int) -> tuple[str, str] | None:
    """The path of the first limit `value` breaks and why (the slow path of `check_value`)."""
    if isinstance(value, str):
        return (path, "must not contain NUL (U+0000)") if _NUL in value else None
    if isinstance(value, float):
        return None if isfinite(value) else (path, "must be a finite number")
    items: list[tuple[str, Any]]
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not isinstance(key, str) or _NUL in key:
                return path, f"keys must be strings without NUL (U+0000), got {str(key)[:40]!r}"
            items.append((f"{path}.{key[:40]}", item))
    elif isinstance(value, list):
        items = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
    else:
        return None
    if depth >= MAX_DEPTH:
        return path, f"nests deeper than {MAX_DEPTH} levels"
    for item_path, item in items:
        found = _find(item, item_path, depth + 1)
        if found is not None:
            return found
    return None


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
    try:
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except OverflowError:
        raise InvalidEvent(field_name, TIMESTAMP_RANGE) from None
    if not MIN_TIMESTAMP <= ts < MAX_TIMESTAMP:
        raise InvalidEvent(field_name, TIMESTAMP_RANGE)
    return ts


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
    def from_wire(cls, data: dict[str, Any], *, _walk: bool = True) -> Event:
        """Parse one wire object, enforcing the whole contract (the limits included): an event
        that breaks it raises `InvalidEvent`, never anything else."""
        if not isinstance(data, dict):
            raise InvalidEvent("(event)", "must be a JSON object")
        message_id = data.get("messageId")
        if not isinstance(message_id, str) or not message_id:
            raise InvalidEvent("messageId", "is required")
        if len(message_id) > MAX_MESSAGE_ID_LEN:
            raise InvalidEvent("messageId", f"must be at most {MAX_MESSAGE_ID_LEN} characters")
        etype = data.get("type")
        if not isinstance(etype, str) or etype not in EVENT_TYPES:
            raise InvalidEvent("type", f"must be one of {sorted(EVENT_TYPES)}")
        if _walk:
            for name, value in data.items():
                if not isinstance(name, str) or _NUL in name:
                    raise InvalidEvent("(event)", "keys must be strings without NUL (U+0000)")
                check_value(name, value)
        user_id = check_id("userId", data.get("userId"))
        anonymous_id = check_id("anonymousId", data.get("anonymousId"))
        if user_id is None and anonymous_id is None:
            raise InvalidEvent("userId", "userId or anonymousId is required")
        properties = _object(data, "properties")
        context = _object(data, "context")
        traits = _object(data, "traits") or _object(context, "traits", "context.traits")
        ev_name = data.get("event")
        if etype == "track" and (not isinstance(ev_name, str) or not ev_name):
            raise InvalidEvent("event", "is required for track")
        page_name = data.get("name")
        for fname, text in (("event", ev_name), ("name", page_name)):
            if isinstance(text, str):
                check_text(fname, text, MAX_NAME_BYTES)
        return cls(
            message_id=message_id,
            type=etype,
            user_id=user_id,
            anonymous_id=anonymous_id,
            timestamp=parse_ts(data.get("timestamp"), "timestamp"),
            received_at=parse_ts(data.get("receivedAt") or data.get("timestamp"), "receivedAt"),
            event=ev_name if isinstance(ev_name, str) else None,
            name=page_name if isinstance(page_name, str) else None,
            properties=properties,
            traits=traits,
            context=context,
            previous_id=check_id("previousId", data.get("previousId")),
            group_id=check_id("groupId", data.get("groupId")),
            raw=data,
        )

    @classmethod
    def from_bytes(cls, value: bytes) -> Event:
        """Parse one record's value (JSON); raises `InvalidEvent` for anything else."""
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent("(event)", f"not valid JSON: {exc}") from exc
        return cls.from_wire(data, _walk=_may_break_limits(value))


def _may_break_limits(raw: bytes) -> bool:
    """Whether parsed JSON could hold a NUL or nest too deep; when not, the walk is skipped (it
    costs about as much as the rest of decoding). JSON writes NUL only as `\\u0000`, and nesting
    beyond `MAX_DEPTH` below a field needs more brackets than that; JSON has no non-finite
    numbers and orjson parses none."""
    return raw.count(b"{") + raw.count(b"[") > MAX_DEPTH + 1 or b"\\u0000" in raw


def _object(data: dict[str, Any], name: str, path: str | None = None) -> dict[str, Any]:
    """An object-valued field; absent or null is `{}`."""
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent(path or name, "must be an object")
    return value
