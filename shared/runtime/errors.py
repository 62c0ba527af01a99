"""The runtime's two kinds of failure, and how library errors map onto them."""

from __future__ import annotations

import asyncio
import random

from sqlalchemy import exc as sa_exc


class PermanentError(Exception):
    """This message can never succeed (undecodable, fails validation): dead-letter it and move on."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class RetryableError(Exception):
    """Infrastructure is unavailable (database, broker): retry with backoff, never skip."""


class ConsumerFailed(Exception):
    """The consumer cannot go on (a bug past the retry bound, the dead-letter breaker, a bad setting).

    `ConsumerRunner.run()` raises it; the process must exit non-zero so its supervisor restarts it.
    """


# SQLSTATEs that mean "try the same transaction again": serialization failure, deadlock, the
# connection/operator-intervention classes (08xxx, 57Pxx: the server went away), insufficient
# resources (53xxx), a read-only transaction (25006: connected to a standby after a failover),
# a cancelled statement (57014: statement_timeout or pg_cancel_backend), a lock timeout (55P03)
# and a database that refuses connections for maintenance (55000: ALLOW_CONNECTIONS false).
_RETRYABLE_SQLSTATES = ("40001", "40P01", "08", "57P", "53", "25006", "57014", "55P03", "55000")


def is_retryable(exc: BaseException) -> bool:
    """True when `exc` comes from infrastructure being down or contended, not from the message."""
    if isinstance(exc, RetryableError | ConnectionError | TimeoutError | asyncio.TimeoutError | OSError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_RETRYABLE_SQLSTATES):
            return True
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        # asyncpg errors wrapped by SQLAlchemy (or by us with `raise ... from`).
        name = type(cause).__module__
        if name.startswith("asyncpg") and type(cause).__name__ in {
            "ConnectionDoesNotExistError",
            "CannotConnectNowError",
            "ConnectionFailureError",
            "InterfaceError",
            "TooManyConnectionsError",
            "AdminShutdownError",
            "SerializationError",
            "DeadlockDetectedError",
        }:
            return True
        return isinstance(cause, ConnectionError | OSError | asyncio.TimeoutError)
    try:
        from aiokafka import errors as kafka_errors
    except ImportError:  # pragma: no cover
        return False
    return (isinstance(exc, kafka_errors.KafkaError) and bool(getattr(exc, "retriable", False))) or (
        isinstance(exc, kafka_errors.KafkaConnectionError | kafka_errors.KafkaTimeoutError)
    )


class Backoff:
    """Exponential backoff with a cap and full jitter; `reset()` after a success.

    The n-th delay is drawn uniformly from [base/2, base] where base = initial * 2**n (capped at
    `maximum`), so replicas retrying against the same outage spread out instead of stampeding.
    The one retry policy of the runtime: the runner, the work loops, timers and jobs all use it.
    """

    def __init__(self, initial: float = 0.1, maximum: float = 5.0, *, jitter: bool = True) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self.current = initial
        self.attempts = 0

    def next(self) -> float:
        base = self.current
        self.current = min(self.current * 2, self.maximum)
        self.attempts += 1
        return random.uniform(base / 2, base) if self.jitter else base

    def reset(self) -> None:
        self.current = self.initial
        self.attempts = 0


def backoff_delay(attempt: int, initial: float, maximum: float, *, jitter: bool = True) -> float:
    """The delay before retry number `attempt` (1-based) of a durable item (a timer, a job)."""
    base = min(maximum, initial * (2 ** max(0, attempt - 1)))
    return random.uniform(base / 2, base) if jitter else base
