"""Dead-letter policy (DESIGN.md §3.3): what a dead letter looks like, its bounded reasons, the breaker.

Only input that can never succeed is dead-lettered: any exception from `decode()`, or a
`PermanentError` from `handle()`. The breaker stops a consumer whose recent dead-letter share is
too high, so a bad deploy (a decoder bug, a rule that rejects everything) does not drain a topic
into the dead-letter topic.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime

from shared.runtime import deadletter
from shared.runtime.errors import PermanentError
from shared.runtime.records import Record

_MAX_REASON = 64
_MAX_REASONS = 50  # distinct reasons per runner; beyond, "other" (metric label cardinality)
_MAX_ERROR = 1000


class Reasons:
    """Bounded metric labels for dead letters: `PermanentError.reason` or the exception's class name."""

    def __init__(self, limit: int = _MAX_REASONS) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def of(self, exc: BaseException) -> str:
        raw = exc.reason if isinstance(exc, PermanentError) else type(exc).__name__
        reason = "".join(c if c.isascii() and (c.isalnum() or c in "_.-") else "_" for c in raw)
        reason = reason[:_MAX_REASON] or "unknown"
        if reason not in self._seen:
            if len(self._seen) >= self._limit:
                return "other"
            self._seen.add(reason)
        return reason


def dead_letter_headers(
    record: Record, consumer: str, reason: str, error: BaseException, at: datetime
) -> list[tuple[str, bytes]]:
    """The original record's headers plus the runtime's (`shared.runtime.deadletter`).

    Headers named like the runtime's are replaced, so a replayed record dead-lettered again carries
    the latest facts only.
    """
    kept = [(k, v) for k, v in record.headers if k not in deadletter.HEADERS]
    return [
        *kept,
        (deadletter.SOURCE_TOPIC, record.topic.encode()),
        (deadletter.SOURCE_PARTITION, str(record.partition).encode()),
        (deadletter.SOURCE_OFFSET, str(record.offset).encode()),
        (deadletter.CONSUMER, consumer.encode()),
        (deadletter.REASON, reason.encode()),
        (deadletter.ERROR, f"{type(error).__name__}: {error}"[:_MAX_ERROR].encode(errors="replace")),
        (deadletter.DEAD_LETTERED_AT, at.isoformat().encode()),
    ]


@dataclass(frozen=True)
class BreakerSettings:
    max_ratio: float = 0.5
    window: int = 1000
    min_messages: int = 100
    max_consecutive: int = 1000


class DeadLetterBreaker:
    """Trips when more than `max_ratio` of the last `window` messages were dead-lettered (once at
    least `min_messages` were seen), or more than `max_consecutive` in a row. Pure: no clock, no I/O.
    """

    def __init__(self, settings: BreakerSettings = BreakerSettings()) -> None:
        self.settings = settings
        self._recent: deque[bool] = deque(maxlen=settings.window)
        self._dead_in_window = 0
        self._consecutive = 0

    def record(self, dead: bool) -> None:
        """Count one message's outcome (applied or duplicate: False; dead-lettered: True)."""
        if len(self._recent) == self._recent.maxlen and self._recent[0]:
            self._dead_in_window -= 1
        self._recent.append(dead)
        self._dead_in_window += dead
        self._consecutive = self._consecutive + 1 if dead else 0

    @property
    def tripped(self) -> str | None:
        """Why the consumer must stop, or None."""
        s = self.settings
        if self._consecutive > s.max_consecutive:
            return f"{self._consecutive} messages in a row dead-lettered (dlq_max_consecutive={s.max_consecutive})"
        seen = len(self._recent)
        if seen >= s.min_messages and self._dead_in_window > s.max_ratio * seen:
            return (
                f"{self._dead_in_window} of the last {seen} messages dead-lettered "
                f"(dlq_max_ratio={s.max_ratio}, dlq_window={s.window})"
            )
        return None
