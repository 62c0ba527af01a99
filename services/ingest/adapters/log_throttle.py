"""A bound on what the Kafka client library logs while the broker is unreachable.

aiokafka logs every failed connection and metadata attempt, and during an outage it retries in
tight loops (tens of thousands of lines a minute per process). The publisher reports the outage
itself, once when it starts and once when it ends; meanwhile `RepeatThrottle` lets each distinct
library message through at most once per `interval` and counts the rest, so a log reader sees
that the library kept failing and how often, without the flood.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Final

# The aiokafka modules whose per-attempt warnings and errors repeat during an outage. A filter
# on a logger applies to that logger's own records only (not its children's), hence each name.
AIOKAFKA_LOGGERS: Final = (
    "aiokafka",
    "aiokafka.client",
    "aiokafka.conn",
    "aiokafka.cluster",
    "aiokafka.producer.producer",
    "aiokafka.producer.sender",
    "aiokafka.producer.message_accumulator",
)


class RepeatThrottle(logging.Filter):
    """Passes a record whose message template was not seen within `interval` seconds; drops
    (and counts) the others. A passed record after drops says how many similar ones were
    dropped. Records at CRITICAL always pass."""

    def __init__(self, interval: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.suppressed_total = 0
        self._clock = clock
        self._last: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL:
            return True
        key = (record.name, record.msg)
        now = self._clock()
        seen = self._last.get(key)
        if seen is not None and now - seen[0] < self.interval:
            self._last[key] = (seen[0], seen[1] + 1)
            self.suppressed_total += 1
            return False
        dropped = seen[1] if seen is not None else 0
        self._last[key] = (now, 0)
        if dropped and isinstance(record.args, tuple):
            record.msg = f"{record.msg} (%d similar messages suppressed in the last %ds)"
            record.args = (*record.args, dropped, int(now - seen[0]) if seen else 0)
        if len(self._last) > 1000:  # templates are few; never let odd ones grow this
            self._last.clear()
        return True

    def install(self, names: Iterable[str] = AIOKAFKA_LOGGERS) -> None:
        for name in names:
            logger = logging.getLogger(name)
            if self not in logger.filters:
                logger.addFilter(self)

    def uninstall(self, names: Iterable[str] = AIOKAFKA_LOGGERS) -> None:
        for name in names:
            logging.getLogger(name).removeFilter(self)
