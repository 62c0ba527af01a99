"""A bound on the bytes of events a worker holds awaiting Kafka's acknowledgement."""

from __future__ import annotations


class InFlightBudget:
    """Bytes awaiting acknowledgement, bounded: `take` refuses once `limit` would be passed,
    except when nothing is in flight, so a single request bigger than the limit still goes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used and self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give_back(self, size: int) -> None:
        self.used -= size
