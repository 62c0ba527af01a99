"""The ingest use case: one HTTP request's body in, its events acknowledged by Kafka out.

Order matters for cost and for what the client is told: a write key from the header or query
string is checked before the body is decompressed or parsed (one in the body, right after
parsing), size limits before parsing, the rate limit before enrichment, and `200` only after
every event was acknowledged. Every refusal is an `IngestError`, which `api.py` turns into a status and body.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.ingest.adapters.kafka_publisher import EventPublisher, PublishFailed
from services.ingest.domain.body import decode_body, parse_json
from services.ingest.domain.envelope import Limits, count_events, prepare_events
from services.ingest.domain.errors import IngestError, RateLimited, Unavailable
from services.ingest.domain.rate_limit import RateLimiter
from services.ingest.domain.write_key import KeyRing, key_from_basic_auth
from services.ingest.metrics import IngestMetrics, IterationBuffer
from shared.events import EVENT_TYPES
from shared.logging import get_logger

log = get_logger(__name__)

_UNAVAILABLE = "the event store is unavailable; nothing was accepted, retry later"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RawRequest:
    """What the use case needs from an HTTP request."""

    kind: str
    body: bytes
    content_encoding: str | None = None
    authorization: str | None = None
    query_write_key: str | None = None


class Intake:
    """Validates, enriches and publishes the events of one request at a time (reentrant)."""

    def __init__(
        self,
        *,
        keys: KeyRing,
        limits: Limits,
        publisher: EventPublisher,
        metrics: IngestMetrics,
        rate_limiter: RateLimiter | None = None,
        unavailable_retry_after: int = 2,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        buffer: IterationBuffer | None = None,
    ) -> None:
        self._keys = keys
        self._limits = limits
        self._publisher = publisher
        self._metrics = metrics
        self._buffer = buffer if buffer is not None else IterationBuffer()
        self._rate_limiter = rate_limiter
        self._retry_after = unavailable_retry_after
        self._clock = clock
        self._monotonic = monotonic
        self._accepted = {t: metrics.events_accepted.labels(t) for t in EVENT_TYPES}
        self._rejected: dict[str, Any] = {}

    @property
    def limits(self) -> Limits:
        return self._limits

    async def ingest(self, request: RawRequest) -> int:
        """Publish the request's events and return how many; raise IngestError otherwise."""
        events = 1
        try:
            received_at = self._clock()
            key = key_from_basic_auth(request.authorization) or request.query_write_key
            source_id = self._keys.authenticate(key) if key else None
            body = decode_body(request.body, request.content_encoding, self._limits.max_request_bytes)
            parsed = parse_json(body)
            events = count_events(request.kind, parsed)
            if source_id is None:
                body_key = parsed.get("writeKey") if isinstance(parsed, dict) else None
                source_id = self._keys.authenticate(body_key)
            self._check_rate(source_id, events)
            outgoing = prepare_events(
                request.kind,
                parsed,
                source_id=source_id,
                received_at=received_at,
                body_size=len(body),
                limits=self._limits,
            )
            await self._publish(outgoing)
        except IngestError as exc:
            self._reject(exc.reason, events)
            raise
        buffer = self._buffer
        buffer.observe(self._metrics.batch_size, len(outgoing))
        if len(outgoing) == 1:
            buffer.inc(self._accepted[outgoing[0].type])
        else:
            for etype, n in Counter(e.type for e in outgoing).items():
                buffer.inc(self._accepted[etype], n)
        return len(outgoing)

    def _check_rate(self, source_id: str, events: int) -> None:
        if self._rate_limiter is None:
            return
        wait = self._rate_limiter.retry_after(source_id, events, self._monotonic())
        if wait:
            raise RateLimited(f"rate limit exceeded for this write key; retry in {wait}s", wait)

    async def _publish(self, outgoing: list[Any]) -> None:
        if not self._publisher.available:  # known outage: refuse at once, quietly
            raise Unavailable(_UNAVAILABLE, self._retry_after)
        start = time.perf_counter()
        try:
            await self._publisher.publish(outgoing)
        except PublishFailed as exc:
            log.warning("publish_failed", events=len(outgoing), error=str(exc))
            raise Unavailable(_UNAVAILABLE, self._retry_after) from exc
        finally:
            self._buffer.observe(self._metrics.produce_duration, time.perf_counter() - start)

    def _reject(self, reason: str, events: int) -> None:
        counter = self._rejected.get(reason)
        if counter is None:
            counter = self._rejected[reason] = self._metrics.events_rejected.labels(reason)
        self._buffer.inc(counter, events)
