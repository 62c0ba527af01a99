"""The consumer runner's observable state: group membership, retries in progress, broker reachability.

`ready` (and the `userops_consumer_ready` gauge) is what /ready reports; `check()` gives the details.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from shared.logging import get_logger
from shared.runtime.metrics import RuntimeMetrics
from shared.runtime.runner_settings import RunnerSettings

log = get_logger("shared.runtime.runner")


class ConsumerState:
    def __init__(self, settings: RunnerSettings, metrics: RuntimeMetrics) -> None:
        self.settings = settings
        self._metrics = metrics
        self._locks = [asyncio.Lock() for _ in range(settings.lanes)]
        self._stopping = False
        self._started = False
        self._joined = False
        self._reachable = True
        self._failing: dict[object, str] = {}  # one entry per retry in progress: why
        self._assigned: set[TopicPartition] = set()
        self._ready_gauge = metrics.ready.labels(consumer=settings.consumer)

    @property
    def ready(self) -> bool:
        """Joined the group (an assignment, even empty, was received), not retrying, broker reachable."""
        return self._started and self._joined and self._reachable and not self._failing

    @property
    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def check(self) -> dict[str, Any]:
        """Details for /ready's body: what is owned, and why the consumer is not ready."""
        reason: str | None = None
        if not self._started:
            reason = "not started"
        elif not self._reachable:
            reason = "broker unreachable"
        elif not self._joined:
            reason = "waiting for the group assignment"
        elif self._failing:
            reason = next(iter(self._failing.values()))
        return {
            "consumer": self.settings.consumer,
            "ready": self.ready,
            "joined": self._joined,
            "broker_reachable": self._reachable,
            "retrying": bool(self._failing),
            "partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in self._assigned),
            "failing": reason,
        }

    def stop(self) -> None:
        """Finish the in-flight batch, commit, and return; a batch being retried is left uncommitted."""
        self._stopping = True

    def _update_ready(self) -> None:
        self._ready_gauge.set(1 if self.ready else 0)

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in self._assigned - assigned:  # revoked: another instance reports these now
            try:
                self._metrics.lag.remove(self.settings.consumer, tp.topic, str(tp.partition))
            except KeyError:
                pass
        self._assigned = assigned
        self._joined = True
        self._update_ready()

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        # Each in-flight batch holds its lane's lock until its offsets are committed.
        for lock in self._locks:
            async with lock:
                pass

    def set_reachable(self, reachable: bool) -> None:
        if reachable != self._reachable:
            if reachable:
                log.info("kafka reachable again", consumer=self.settings.consumer)
            else:
                log.warning("kafka unreachable", consumer=self.settings.consumer)
        self._reachable = reachable
        self._update_ready()

    def mark_started(self, started: bool) -> None:
        self._started = started
        self._update_ready()
