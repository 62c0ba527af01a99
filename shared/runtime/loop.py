"""The background loop shared by the outbox relay and the timer workers.

`step()` does one unit of work and says whether it found any. Found work → step again at once;
none → sleep until `notify()` or the idle wait passes. A transient failure backs off and retries
(`healthy` is False meanwhile, for `/ready`), logged once when it starts and once when it ends;
any other failure ends the loop with the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from shared.runtime.errors import Backoff, is_retryable
from shared.runtime.retry import FailureLog


class WorkLoop:
    def __init__(self, what: str, *, drain_on_stop: bool) -> None:
        self._what = what
        self._drain_on_stop = drain_on_stop
        self._wake = asyncio.Event()
        self._stopping = False
        self.healthy = True

    def notify(self) -> None:
        """New work may be there: end the idle wait now."""
        self._wake.set()

    def stop(self) -> None:
        """End the loop: at once, or (with `drain_on_stop`) once a step finds no work."""
        self._stopping = True
        self._wake.set()

    async def loop(
        self, step: Callable[[], Awaitable[int]], idle_wait: Callable[[], Awaitable[float]]
    ) -> None:
        backoff = Backoff()
        failures = FailureLog(self._what)
        while self._drain_on_stop or not self._stopping:
            try:
                done = await step()
                self.healthy = True
                backoff.reset()
                failures.recovered()
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                self.healthy = False
                delay = backoff.next()
                failures.failed(exc, delay)
                await asyncio.sleep(delay)
                continue
            if done:
                continue
            if self._stopping:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), await idle_wait())
            except TimeoutError:
                pass
