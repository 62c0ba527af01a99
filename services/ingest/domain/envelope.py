"""Segment envelopes in, enriched events out (DESIGN.md §2).

`prepare_events` validates one request body (a single call or a batch) and returns each event as
its Kafka key and JSON value, ready to publish; the first broken event refuses the whole request
with a message naming the field and, in a batch, the item index (`batch[3].userId: ...`).

Every published event has: `type`; `messageId` (the client's, ≤ 100 chars, else a new uuid4);
`userId` and/or `anonymousId` as non-empty strings (numbers are coerced, JSON null is absent);
`receivedAt` (the server's clock); `originalTimestamp` (the client's, as sent, else receivedAt);
`timestamp` corrected for clock skew; `sourceId`; and the batch's `context` (shallow-merged),
`integrations` and `sentAt` where the item has none. `writeKey` is never published.
This is the contract `shared.events.Event.from_wire` parses, and the limits are its own
(`shared.events`): ids ≤ `MAX_ID_BYTES`, event names ≤ `MAX_NAME_BYTES`, no NUL in any string,
finite numbers, nesting ≤ `MAX_DEPTH`; a violation is a 400 naming the field's path.

Hand-written rather than a pydantic model: this runs once per event on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple
from uuid import uuid4

import orjson

from services.ingest.domain.errors import InvalidRequest, PayloadTooLarge
from services.ingest.domain.timestamps import corrected_timestamp, format_ts, parse_ts
from shared.events import (
    EVENT_TYPES,
    MAX_DEPTH,
    MAX_ID_BYTES,
    MAX_MESSAGE_ID_LEN,
    MAX_NAME_BYTES,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    TIMESTAMP_RANGE,
    InvalidEvent,
    check_id,
    check_text,
    check_value,
    partition_key,
)

KINDS: Final = ("track", "identify", "page", "screen", "group", "alias", "batch")
_REQUIRED: Final = {"track": "event", "alias": "previousId", "group": "groupId"}
_OTHER_IDS: Final = ("groupId", "previousId")  # checked wherever present, not only when required
_NAME_FIELDS: Final = ("event", "name")
# Strings of at most this many characters are within every byte limit (4 bytes per character).
_SHORT: Final = min(MAX_ID_BYTES, MAX_NAME_BYTES) // 4
_OBJECT_FIELDS: Final = ("properties", "traits", "context", "integrations")
_BATCH_SHARED: Final = ("context", "integrations", "sentAt")
# Room for what ingest adds to an event (messageId, receivedAt, timestamps, sentAt, sourceId,
# type), so an event the client measured as just under the limit is not refused for them.
INGEST_ADDITIONS: Final = 512
# How far merging a batch's `context` into its items may multiply a request's size.
EXPANSION: Final = 4


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes in bytes of JSON after decompression; `max_batch_events` items per request."""

    max_event_bytes: int = 32 * 1024
    max_request_bytes: int = 500 * 1024
    max_batch_events: int = 2500


class OutgoingEvent(NamedTuple):
    """One event ready for Kafka: key (the user id), value (JSON) and its type (for metrics)."""

    key: bytes
    value: bytes
    type: str


class _Shared(NamedTuple):
    """What a batch's top level lends its items; `sent_at` parsed once per request."""

    context: dict[str, Any] | None
    integrations: dict[str, Any] | None
    sent_at_raw: str | None
    sent_at: datetime | None


_NO_SHARED: Final = _Shared(None, None, None, None)


def count_events(kind: str, body: Any) -> int:
    """How many events a parsed body claims to carry (for rate limits and metrics)."""
    if kind != "batch":
        return 1
    items = body.get("batch") if isinstance(body, dict) else None
    return len(items) if isinstance(items, list) else 1


def prepare_events(
    kind: str, body: Any, *, source_id: str, received_at: datetime, body_size: int, limits: Limits
) -> list[OutgoingEvent]:
    """Validate and enrich every event of one request. Raises InvalidRequest/PayloadTooLarge.

    `kind` is the path (`track` ... `batch`), `body` the parsed JSON, `body_size` its size in
    bytes after decompression, `received_at` the server's clock (aware, UTC).

    The per-event limit applies to each event as published, the batch's shared `context`
    included but not the fields ingest adds (up to `INGEST_ADDITIONS` bytes). Because merging
    copies the batch context into every item, the published events of one request may also
    not exceed `EXPANSION` times the request limit in total.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("body: must be a JSON object")
    received = format_ts(received_at)
    event_limit = limits.max_event_bytes + INGEST_ADDITIONS
    if kind != "batch":
        event = _enrich(body, kind, "", _NO_SHARED, source_id, received_at, received)
        if len(event.value) > event_limit:
            raise _event_too_large("event", len(event.value), limits)
        return [event]
    items = body.get("batch")
    if not isinstance(items, list):
        raise InvalidRequest("batch: must be an array of events")
    if not items:
        raise InvalidRequest("batch: must contain at least one event")
    if len(items) > limits.max_batch_events:
        raise PayloadTooLarge(
            f"batch: {len(items)} events is over the limit of {limits.max_batch_events} per request"
        )
    shared = _batch_shared(body)
    budget = limits.max_request_bytes * EXPANSION
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidRequest(f"batch[{i}]: must be a JSON object")
        event = _enrich(item, None, f"batch[{i}].", shared, source_id, received_at, received)
        size = len(event.value)
        if size > event_limit:
            raise _event_too_large(f"batch[{i}]", size, limits)
        budget -= size
        if budget < 0:
            raise PayloadTooLarge(
                f"batch: the events with the batch context merged in exceed "
                f"{limits.max_request_bytes * EXPANSION} bytes (at item {i})"
            )
        out.append(event)
    return out


def _event_too_large(where: str, size: int, limits: Limits) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{where}: {size} bytes as published is over the per-event limit of {limits.max_event_bytes} bytes"
    )


def _batch_shared(body: dict[str, Any]) -> _Shared:
    context, integrations, sent_raw = (body.get(name) for name in _BATCH_SHARED)
    for name, value in (("context", context), ("integrations", integrations)):
        if value is not None and not isinstance(value, dict):
            raise InvalidRequest(f"{name}: must be an object")
        _check_value(name, value, "")
    if sent_raw is None:
        return _Shared(context, integrations, None, None)
    return _Shared(context, integrations, sent_raw, parse_ts(sent_raw, "sentAt"))


def _dumps(event: dict[str, Any], prefix: str) -> bytes:
    try:
        return orjson.dumps(event)
    except orjson.JSONEncodeError as exc:  # e.g. nesting deeper than orjson writes
        raise InvalidRequest(f"{prefix or 'body: '}cannot be re-encoded: {exc}") from exc


def _opt_id(event: dict[str, Any], name: str, prefix: str) -> str | None:
    """An id as a non-empty string or None; numbers are coerced, null and "" are absent."""
    value = event.get(name)
    if type(value) is str and 0 < len(value) <= _SHORT and "\x00" not in value:
        return value  # the common case, within every limit
    try:
        text = check_id(name, value)
    except InvalidEvent as exc:
        raise InvalidRequest(f"{prefix}{exc}") from None
    if text is not None and text is not value:
        event[name] = text
    return text


def _check_value(name: str, value: Any, prefix: str) -> None:
    try:
        check_value(name, value)
    except InvalidEvent as exc:
        raise InvalidRequest(f"{prefix}{exc}") from None


def _check_values(ev: dict[str, Any], prefix: str) -> None:
    """Every top-level field's value within the contract's limits (shared.events.check_value)."""
    for name, value in ev.items():
        if type(name) is not str or "\x00" in name:
            raise InvalidRequest(f"{prefix}(event): keys must be strings without NUL (U+0000)")
        _check_value(name, value, prefix)


def _check_name(ev: dict[str, Any], name: str, prefix: str) -> None:
    value = ev.get(name)
    if type(value) is str:
        try:
            check_text(name, value, MAX_NAME_BYTES)
        except InvalidEvent as exc:
            raise InvalidRequest(f"{prefix}{exc}") from None


def _enrich(
    ev: dict[str, Any],
    kind: str | None,
    prefix: str,
    shared: _Shared,
    source_id: str,
    received_at: datetime,
    received: str,
) -> OutgoingEvent:
    """Validate one event and enrich it in place; returns it encoded."""
    if kind is None:
        etype = ev.get("type")
        if etype not in EVENT_TYPES:
            raise InvalidRequest(f"{prefix}type: must be one of {', '.join(sorted(EVENT_TYPES))}")
    else:
        etype = ev["type"] = kind
    ev.pop("writeKey", None)

    user_id = _opt_id(ev, "userId", prefix)
    anonymous_id = _opt_id(ev, "anonymousId", prefix)
    if user_id is None:
        ev.pop("userId", None)
        if anonymous_id is None:
            ev.pop("anonymousId", None)
            raise InvalidRequest(f"{prefix}userId: userId or anonymousId is required")
    if anonymous_id is None:
        ev.pop("anonymousId", None)

    required = _REQUIRED.get(etype)
    if required is not None:
        if required == "event":
            name = ev.get("event")
            if not isinstance(name, str) or not name:
                raise InvalidRequest(f"{prefix}event: is required for track")
        elif _opt_id(ev, required, prefix) is None:
            raise InvalidRequest(f"{prefix}{required}: is required for {etype}")
    for name in _OTHER_IDS:
        if name != required and name in ev:
            _opt_id(ev, name, prefix)

    for name in _NAME_FIELDS:
        text = ev.get(name)
        if type(text) is str and (len(text) > _SHORT or "\x00" in text):
            _check_name(ev, name, prefix)

    message_id = ev.get("messageId")
    if message_id is None or message_id == "":
        ev["messageId"] = str(uuid4())
    elif type(message_id) is not str:
        raise InvalidRequest(f"{prefix}messageId: must be a string")
    elif len(message_id) > MAX_MESSAGE_ID_LEN:
        raise InvalidRequest(f"{prefix}messageId: must be at most {MAX_MESSAGE_ID_LEN} characters")
    elif "\x00" in message_id:
        raise InvalidRequest(f"{prefix}messageId: must not contain NUL (U+0000)")

    for name in _OBJECT_FIELDS:
        value = ev.get(name)
        if value is None:
            ev.pop(name, None)
        elif type(value) is not dict:
            raise InvalidRequest(f"{prefix}{name}: must be an object")
    context = ev.get("context")
    traits = None if context is None else context.get("traits")
    if traits is not None and type(traits) is not dict:
        raise InvalidRequest(f"{prefix}context.traits: must be an object")

    if shared.context is not None:
        ev["context"] = shared.context if context is None else {**shared.context, **context}
    if shared.integrations is not None and "integrations" not in ev:
        ev["integrations"] = shared.integrations

    _stamp_times(ev, prefix, shared, received_at, received)
    ev["sourceId"] = source_id
    value = _dumps(ev, prefix)
    # The exact walk costs about as much as the rest of this function, so it runs only when the
    # encoded event could break a limit: nesting deeper than MAX_DEPTH needs more brackets than
    # that, and NUL is always written `\u0000`. (orjson parses no non-finite number and
    # writes none.)
    if value.count(b"{") + value.count(b"[") > MAX_DEPTH or b"\\u0000" in value:
        _check_values(ev, prefix)
    return OutgoingEvent(partition_key(ev).encode(), value, etype)


def _stamp_times(
    ev: dict[str, Any], prefix: str, shared: _Shared, received_at: datetime, received: str
) -> None:
    """Set `receivedAt`, `sentAt`, `originalTimestamp` and the skew-corrected `timestamp`."""
    ev["receivedAt"] = received
    sent_raw = ev.get("sentAt")
    if sent_raw is None:
        sent_raw, sent_at = shared.sent_at_raw, shared.sent_at
        if sent_raw is None:
            ev.pop("sentAt", None)
        else:
            ev["sentAt"] = sent_raw
    elif sent_raw == shared.sent_at_raw:
        sent_at = shared.sent_at
    else:
        sent_at = parse_ts(sent_raw, prefix + "sentAt")

    client_ts = ev.get("timestamp")
    original_raw = ev.get("originalTimestamp")
    if original_raw is None:
        if client_ts is None:
            ev["originalTimestamp"] = ev["timestamp"] = received
            return
        original_raw = ev["originalTimestamp"] = client_ts
        original = parse_ts(client_ts, prefix + "timestamp")
    else:
        original = parse_ts(original_raw, prefix + "originalTimestamp")
    try:
        if sent_at is not None:
            corrected = corrected_timestamp(received_at, sent_at, original)
        elif client_ts is not None and client_ts is not original_raw:
            corrected = parse_ts(client_ts, prefix + "timestamp")  # both were sent, no sentAt
        else:
            corrected = original
        if not MIN_TIMESTAMP <= corrected < MAX_TIMESTAMP:  # the consumers' date arithmetic overflows
            raise OverflowError
        ev["timestamp"] = format_ts(corrected)
    except OverflowError:
        raise InvalidRequest(
            f"{prefix}timestamp: is out of range (client clock): {TIMESTAMP_RANGE}"
        ) from None
