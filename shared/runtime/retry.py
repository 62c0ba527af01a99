"""Logging a failing-then-recovering operation as two state changes, not one line per retry.

During an outage a retry loop runs every few seconds for as long as it lasts; logging each attempt
floods the logs exactly when an operator reads them. `FailureLog` logs the first failure (with the
error), counts the rest at debug level, and logs the recovery once with how many attempts it took.
"""

from __future__ import annotations

import time
from typing import Any

from shared.logging import get_logger

log = get_logger("shared.runtime.retry")


class FailureLog:
    def __init__(self, what: str, **context: Any) -> None:
        self.what = what
        self._context = context
        self.failures = 0
        self._since = 0.0

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def failed(self, exc: BaseException, retry_in: float) -> None:
        """Record one failed attempt; only the first of a run is logged as a warning."""
        if self.failures == 0:
            self._since = time.monotonic()
            log.warning(
                f"{self.what} failed; retrying",
                error=repr(exc)[:500],
                retry_in=round(retry_in, 3),
                **self._context,
            )
        else:
            log.debug(f"{self.what} failed again", error=type(exc).__name__, **self._context)
        self.failures += 1

    def recovered(self) -> None:
        """The operation succeeded: log the recovery if it had been failing."""
        if self.failures:
            log.info(
                f"{self.what} recovered",
                attempts=self.failures + 1,
                failing_seconds=round(time.monotonic() - self._since, 3),
                **self._context,
            )
        self.failures = 0
