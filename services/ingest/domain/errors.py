"""Why a request was refused. Each error maps to one HTTP status in `api.py` and carries a
stable `code` (the body's `code`) and a metric `reason` (`userops_ingest_events_rejected_total`)."""

from __future__ import annotations

from typing import ClassVar


class IngestError(Exception):
    """A refused request; `message` is safe to show the client (no keys, no user ids)."""

    code: ClassVar[str] = "error"
    reason: ClassVar[str] = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(IngestError):
    """The body or an event breaks the contract; the message names the field and item index."""

    code = "invalid_request"
    reason = "invalid"


class Unauthorized(IngestError):
    """No write key, an unknown one, or one of a disabled source."""

    code = "unauthorized"
    reason = "unauthorized"


class PayloadTooLarge(IngestError):
    """An event, the request or the batch is over its limit (measured after decompression)."""

    code = "payload_too_large"
    reason = "too_large"


class RetryableError(IngestError):
    """A refusal the client should retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class RateLimited(RetryableError):
    """The write key sent more events than its token bucket allows."""

    code = "rate_limited"
    reason = "rate_limited"


class Unavailable(RetryableError):
    """Kafka did not acknowledge every event in time; nothing may be assumed stored."""

    code = "unavailable"
    reason = "unavailable"
