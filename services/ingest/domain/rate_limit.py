"""Per-write-key token buckets counted in events. `now` is a monotonic time in seconds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """Holds up to `burst` tokens, refilled at `rate` per second.

    A request of `n` events needs `min(n, burst)` tokens available and then takes `n` (the
    bucket may go negative), so a batch bigger than the burst is admitted once the bucket is
    full instead of never, and still pays for every event it carries.
    """

    rate: float
    burst: float
    tokens: float = field(default=-1.0)
    updated: float | None = None

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, n: int, now: float) -> float:
        """Take `n` tokens and return 0.0, or return the seconds to wait (nothing taken)."""
        if self.updated is not None and now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        if self.updated is None or now > self.updated:
            self.updated = now
        need = min(float(n), self.burst)
        if self.tokens >= need:
            self.tokens -= n
            return 0.0
        return (need - self.tokens) / self.rate


class RateLimiter:
    """One bucket per source; `retry_after(source, n, now)` is 0 when admitted."""

    def __init__(self, events_per_second: float, burst: float) -> None:
        self._rate = events_per_second
        self._burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def retry_after(self, source_id: str, n: int, now: float) -> int:
        """0 if the `n` events are admitted, else whole seconds to wait (at least 1)."""
        bucket = self._buckets.get(source_id)
        if bucket is None:
            bucket = self._buckets[source_id] = TokenBucket(self._rate, self._burst)
        wait = bucket.take(n, now)
        return 0 if wait <= 0 else max(1, math.ceil(wait))
