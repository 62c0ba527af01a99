"""The durable job queue: effects outside the database, performed outside any transaction.

A handler that must call a webhook or send an email never does it in `handle()` (the runner
re-runs handlers on retry and on isolation, and a sent email cannot be rolled back). It enqueues
a `Job` in its transaction instead (`enqueue`), with the effect's idempotency key as the id. A
`JobWorker` then:

1. claims due jobs in a short transaction (`FOR UPDATE SKIP LOCKED`): state `running`, attempts
   + 1, a lease of the kind's `timeout` plus a margin; commits;
2. performs each one with no transaction open, bounded by `timeout` and by `concurrency`;
3. records the outcome in a new short transaction, only while it still holds the lease, and
   calls the kind's `on_outcome` hook in that same transaction (a service writes its delivery
   rows or outbox events atomically with the job's state).

A worker lost mid-effect (kill -9, a hang past the lease) leaves the job `running`; once its
lease has expired any worker claims it again and performs it again with the same id, so an
effect is never lost and receivers dedupe on the key (DESIGN.md §3.5). Failure policy per kind:
`PermanentError` → `failed` at once; any other exception (a timeout included) → queued again
after `backoff_delay(attempt, backoff_initial, backoff_max)`, and `failed` past `max_attempts`.
Failed jobs stay until an operator replays them (`replay_failed`, `userops jobs replay`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.logging import get_logger
from shared.runtime import job_store as store
from shared.runtime.errors import Backoff, PermanentError, backoff_delay, is_retryable
from shared.runtime.failure import failure_text
from shared.runtime.job_metrics import JobMetrics
from shared.runtime.job_store import ClaimedJob, FailedJob, Job, enqueue, list_failed, replay_failed
from shared.runtime.loop import WorkLoop

__all__ = [
    "ClaimedJob",
    "FailedJob",
    "Job",
    "JobKind",
    "JobMetrics",
    "JobOutcome",
    "JobWorker",
    "JobWorkerSettings",
    "decide_outcome",
    "enqueue",
    "list_failed",
    "replay_failed",
]

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """What an attempt came to: `retrying` means queued again in `retry_in` seconds."""

    state: Literal["succeeded", "retrying", "failed"]
    attempt: int
    error: str | None = None
    retry_in: float | None = None


OutcomeHook = Callable[[AsyncSession, ClaimedJob, JobOutcome], Awaitable[None]]


@dataclass(frozen=True)
class JobKind:
    """How one kind of job is performed and retried.

    `perform` must pass `job.id` to the receiver as the idempotency key (`webhook-id`,
    `Message-ID`): it may run more than once for one id. Raise `PermanentError` when retrying
    cannot help (a 4xx answer, an invalid address). `on_outcome`, if given, runs in the
    transaction that records every outcome (succeeded, retrying, failed); it must not perform
    effects outside the database. If it raises (not an outage), the job is recorded `failed`
    without it, for an operator to replay after a fix.
    """

    kind: str
    perform: Callable[[ClaimedJob], Awaitable[None]]
    max_attempts: int = 5
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    timeout: float = 30.0  # seconds per attempt
    on_outcome: OutcomeHook | None = None


def decide_outcome(kind: JobKind, attempt: int, error: BaseException | None) -> JobOutcome:
    """The outcome of attempt number `attempt` (1-based) of a job of `kind` that raised `error`."""
    if error is None:
        return JobOutcome("succeeded", attempt)
    text = failure_text(error)
    if isinstance(error, PermanentError) or attempt >= kind.max_attempts:
        return JobOutcome("failed", attempt, text)
    return JobOutcome(
        "retrying", attempt, text, backoff_delay(attempt, kind.backoff_initial, kind.backoff_max)
    )


@dataclass(frozen=True)
class JobWorkerSettings:
    concurrency: int = 8  # jobs performed at once by one worker
    idle_interval: float = 1.0  # longest sleep between polls when nothing is due
    lease_margin: float = 10.0  # lease = the kind's timeout + this, for the outcome to be recorded
    retention: timedelta = timedelta(days=7)  # succeeded jobs (their ids dedupe enqueues) are kept this long
    purge_batch: int = 1000
    purge_every: float = 60.0
    gauges_every: float = 5.0


_STATE = {"succeeded": "succeeded", "retrying": "queued", "failed": "failed"}


class JobWorker(WorkLoop):
    """Claims, performs and records jobs of `kinds`; run several (or several replicas) safely."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        kinds: Sequence[JobKind],
        registry: CollectorRegistry,
        service: str,
        *,
        settings: JobWorkerSettings = JobWorkerSettings(),
    ) -> None:
        self._sessions = sessions
        self._kinds = {k.kind: k for k in kinds}
        self._names = list(self._kinds)
        self._metrics = JobMetrics.create(registry, service)
        self._settings = settings
        self._inflight: set[asyncio.Task[None]] = set()
        self._crashed: BaseException | None = None
        self._next_gauges = self._next_purge = 0.0
        super().__init__("job claim", drain_on_stop=False)

    async def run(self) -> None:
        """Until `stop()`: then the jobs in flight finish (each within its timeout) and are recorded."""
        try:
            await self.loop(self._step, self._idle_wait)
            await asyncio.gather(*self._inflight)
        finally:
            for task in self._inflight:
                task.cancel()  # cancelled (not stopped): their leases expire, another worker re-runs them
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _step(self) -> int:
        if self._crashed is not None:
            crashed, self._crashed = self._crashed, None
            raise crashed  # a job's outcome could not be recorded: a bug, the worker ends
        await self._housekeeping()
        free = self._settings.concurrency - len(self._inflight)
        if free <= 0:
            return 0  # a finishing job wakes the loop (`notify`)
        async with self._sessions() as session, session.begin():
            rows = (await session.execute(store.CLAIM, self._claim_params(free))).all()
        for r in rows:
            job = ClaimedJob(r.id, r.kind, r.payload, r.attempts, r.max_attempts)
            task = asyncio.create_task(self._attempt(job), name=f"job {job.kind}")
            self._inflight.add(task)
            task.add_done_callback(self._finished)
        return len(rows)

    def _claim_params(self, n: int) -> dict[str, object]:
        kinds = list(self._kinds.values())
        return {
            "kinds": self._names,
            "leases": [k.timeout + self._settings.lease_margin for k in kinds],
            "maxes": [k.max_attempts for k in kinds],
            "n": n,
        }

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None and self._crashed is None:
            self._crashed = task.exception()
        self.notify()

    async def _idle_wait(self) -> float:
        if len(self._inflight) >= self._settings.concurrency:
            return self._settings.idle_interval
        async with self._sessions() as session:
            wait = (await session.execute(store.NEXT_DUE, {"kinds": self._names})).scalar()
        if wait is None:
            return self._settings.idle_interval
        return max(0.0, min(self._settings.idle_interval, float(wait)))

    async def _attempt(self, job: ClaimedJob) -> None:
        kind = self._kinds[job.kind]
        deadline = time.monotonic() + kind.timeout + self._settings.lease_margin
        if job.attempt > job.max_attempts:
            # Its last attempt's worker was lost mid-effect: the bound is spent, do not run it again.
            lost = TimeoutError(f"lease expired during attempt {job.attempt - 1}; its worker was lost")
            outcome = JobOutcome("failed", job.attempt, failure_text(lost))
        else:
            started = time.monotonic()
            error: Exception | None = None
            try:
                await asyncio.wait_for(kind.perform(job), kind.timeout)
            except TimeoutError as exc:
                error = TimeoutError(f"no result within {kind.timeout}s ({failure_text(exc)})")
            except Exception as exc:  # every failure of the effect is classified, none ends the worker
                error = exc
            self._metrics.attempt_seconds.labels(service=self._metrics.service, kind=job.kind).observe(
                time.monotonic() - started
            )
            outcome = decide_outcome(kind, job.attempt, error)
        recorded = await self._record(job, kind, outcome, deadline)
        if recorded is None:
            return
        labels = {"service": self._metrics.service, "kind": job.kind}
        if recorded.state == "succeeded":
            self._metrics.succeeded.labels(**labels).inc()
        elif recorded.state == "retrying":
            self._metrics.retried.labels(**labels).inc()
            log.info(
                "job attempt failed; will retry",
                kind=job.kind,
                attempt=job.attempt,
                retry_in=recorded.retry_in,
                error=recorded.error,
            )
        else:
            self._metrics.failed.labels(**labels).inc()
            log.error(
                "job failed; replay it once fixed", kind=job.kind, attempt=job.attempt, error=recorded.error
            )

    async def _record(
        self, job: ClaimedJob, kind: JobKind, outcome: JobOutcome, deadline: float
    ) -> JobOutcome | None:
        """Record `outcome` while the lease is held; None if it was lost (another worker re-runs it).

        An outage is retried until the lease ends. A hook that fails otherwise is a bug in the
        service: the job is recorded `failed` without it, out of the way and visible.
        """
        backoff = Backoff(0.1, 2.0)
        hook = kind.on_outcome
        while True:
            try:
                return outcome if await self._write(job, outcome, hook) else None
            except Exception as exc:
                if not is_retryable(exc):
                    if hook is None:
                        raise  # recording itself is broken: end the worker (the process restarts)
                    log.error(
                        "job outcome hook failed; recording the job failed without it",
                        kind=job.kind,
                        error=failure_text(exc),
                    )
                    outcome, hook = (
                        JobOutcome("failed", job.attempt, f"on_outcome: {failure_text(exc)}"),
                        None,
                    )
                    continue
                if time.monotonic() + backoff.current >= deadline:
                    log.warning("cannot record a job's outcome before its lease ends", kind=job.kind)
                    return None
                await asyncio.sleep(backoff.next())

    async def _write(self, job: ClaimedJob, outcome: JobOutcome, hook: OutcomeHook | None) -> bool:
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                store.RECORD,
                {
                    "id": job.id,
                    "attempt": job.attempt,
                    "state": _STATE[outcome.state],
                    "error": outcome.error,
                    "retry_in": outcome.retry_in or 0.0,
                },
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                log.warning("job lease lost before its outcome was recorded", kind=job.kind)
                return False
            if hook is not None:
                await hook(session, job, outcome)
        return True

    async def _housekeeping(self) -> None:
        """Refresh the gauges and purge old succeeded jobs, each at most every few seconds."""
        now = time.monotonic()
        if now >= self._next_gauges:
            self._next_gauges = now + self._settings.gauges_every
            async with self._sessions() as session:
                rows = (await session.execute(store.GAUGES, {"kinds": self._names})).all()
            self._metrics.refresh(
                self._names, {r.kind: (int(r.queued), int(r.running), float(r.oldest_due or 0)) for r in rows}
            )
        if now >= self._next_purge:
            self._next_purge = now + self._settings.purge_every
            retention = self._settings.retention.total_seconds()
            while True:  # bounded statements until caught up, so purging keeps up with any rate
                async with self._sessions() as session, session.begin():
                    result = await session.execute(
                        store.PURGE, {"retention": retention, "n": self._settings.purge_batch}
                    )
                if result.rowcount < self._settings.purge_batch:  # type: ignore[attr-defined]
                    break
