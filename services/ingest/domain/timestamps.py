"""Event times: parsing client timestamps, formatting, and clock-skew correction."""

from __future__ import annotations

from datetime import UTC, datetime

from services.ingest.domain.errors import InvalidRequest


def format_ts(ts: datetime) -> str:
    """ISO-8601 UTC with milliseconds and `Z`, the form of `shared.events.format_ts` (naive
    values are UTC). Sliced from the default `isoformat()`, the fastest of the C formatters.
    Raises OverflowError if the time is out of range once converted to UTC."""
    if ts.utcoffset():
        ts = ts.astimezone(UTC)
    text = ts.isoformat()
    return text[:23] + "Z" if ts.microsecond else text[:19] + ".000Z"


def _fromisoformat(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        pass
    if value[-1] == "z":  # a lower-case `z` is valid ISO-8601 but not accepted by fromisoformat
        try:
            return datetime.fromisoformat(value[:-1] + "+00:00")
        except ValueError:
            pass
    return None


def parse_ts(value: object, field: str) -> datetime:
    """An aware datetime from an ISO-8601 string (naive values are UTC); the offset is kept."""
    if type(value) is not str or not value:
        raise InvalidRequest(f"{field}: must be an ISO-8601 timestamp string")
    ts = _fromisoformat(value)
    if ts is None:
        raise InvalidRequest(f"{field}: is not an ISO-8601 timestamp: {value[:40]!r}")
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


def corrected_timestamp(received_at: datetime, sent_at: datetime, original: datetime) -> datetime:
    """Segment's skew correction: `receivedAt - (sentAt - originalTimestamp)`.

    The client's clock may be off, but the time between the event and the upload is measured on
    that same clock, so it carries over to the server's clock. Raises OverflowError if the result
    falls outside the representable range (absurd client clocks).
    """
    return received_at - (sent_at - original)
