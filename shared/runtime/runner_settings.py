"""The consumer runner's settings: one frozen object per consumer, built by the service."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from shared.runtime.dlq_policy import BreakerSettings
from shared.topics import DEADLETTER


@dataclass(frozen=True)
class RunnerSettings:
    consumer: str  # the consumer group, also the dedupe scope and the metrics label
    topics: Sequence[str]
    bootstrap: str
    deadletter_topic: str = DEADLETTER
    max_batch: int = 500
    poll_timeout_ms: int = 500
    # How long dedupe keys are kept; validated at start to cover every source topic's retention.ms
    # (read from the broker). None keeps them forever (required for a topic kept forever).
    dedupe_retention: timedelta | None = timedelta(days=7)
    dedupe_purge_every: timedelta = timedelta(minutes=1)
    dedupe_purge_batch: int = 10_000  # keys per DELETE; a purge loops until none older remain
    session_timeout_ms: int = 30_000
    max_poll_interval_ms: int = 300_000
    lanes: int = 1  # batches in flight at once, each from partitions p with p % lanes == its number
    # Static membership (KIP-345): a restarted instance with the same id takes its partitions
    # back at once instead of waiting for the group to time the old member out.
    instance_id: str | None = None
    # A non-retryable exception other than PermanentError (a bug) is retried this many times,
    # then run() raises ConsumerFailed so the process exits and its supervisor restarts it.
    max_unexpected_failures: int = 5
    retry_initial_seconds: float = 0.1
    retry_max_seconds: float = 5.0
    # The dead-letter breaker (dlq_policy.DeadLetterBreaker).
    dlq_max_ratio: float = 0.5
    dlq_window: int = 1000
    dlq_min_messages: int = 100
    dlq_max_consecutive: int = 1000
    health_check_every_seconds: float = 2.0  # how often the broker's reachability is checked
    lag_every_seconds: float = 1.0  # how often the lag of every assigned partition is measured
    # How long run() waits, after one lane failed, for the others to finish their batch, and for
    # the Kafka client to stop; then it cancels them, so a failure always ends run().
    stop_grace_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.lanes < 1 or self.max_batch < 1 or self.dedupe_purge_batch < 1:
            raise ValueError("lanes, max_batch and dedupe_purge_batch must be at least 1")
        if not 0 < self.dlq_max_ratio <= 1 or self.dlq_window < 1 or self.dlq_min_messages < 1:
            raise ValueError("dlq_max_ratio must be in (0, 1]; dlq_window and dlq_min_messages >= 1")
        if self.max_unexpected_failures < 0:
            raise ValueError("max_unexpected_failures must be >= 0")

    @property
    def breaker(self) -> BreakerSettings:
        return BreakerSettings(
            max_ratio=self.dlq_max_ratio,
            window=self.dlq_window,
            min_messages=self.dlq_min_messages,
            max_consecutive=self.dlq_max_consecutive,
        )
