"""The durable job queue on a real PostgreSQL: effects outside transactions, at least once, never lost."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from shared.runtime import jobs
from shared.runtime.db import session_factory
from shared.runtime.errors import PermanentError
from shared.runtime.schema import RUNTIME_DDL
from tests.conftest import eventually, plain_url

TEST_DDL = (
    "CREATE TABLE orders (id text PRIMARY KEY)",
    "CREATE TABLE deliveries (job_id text, attempt int, state text, error text)",
)
FAST = jobs.JobWorkerSettings(idle_interval=0.05, lease_margin=0.3, gauges_every=0.05)


@pytest.fixture
async def engine(database: str) -> AsyncIterator[AsyncEngine]:
    # A name of its own, so a test can see this engine's backends in pg_stat_activity.
    engine = create_async_engine(
        database, pool_size=4, connect_args={"server_settings": {"application_name": "jobs-under-test"}}
    )
    async with engine.begin() as conn:
        for ddl in (*RUNTIME_DDL, *TEST_DDL):
            await conn.execute(text(ddl))
    yield engine
    await engine.dispose()


class Receiver:
    """A real HTTP endpoint on 127.0.0.1 that counts the deliveries it receives per `webhook-id`."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        self.at: dict[str, list[float]] = {}
        receiver = self

        class Handle(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                key = self.headers["webhook-id"]
                receiver.received[key] += 1
                receiver.at.setdefault(key, []).append(time.time())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


async def _enqueue(engine: AsyncEngine, *batch: jobs.Job) -> set[str]:
    async with session_factory(engine)() as s, s.begin():
        return await jobs.enqueue(s, batch)


async def _job(engine: AsyncEngine, job_id: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM jobs WHERE id = :id"), {"id": job_id})).one()
    return dict(row._mapping)


async def _state(engine: AsyncEngine, job_id: str, state: str) -> dict[str, Any] | None:
    row = await _job(engine, job_id)
    return row if row["state"] == state else None


async def _record_delivery(session: AsyncSession, job: jobs.ClaimedJob, outcome: jobs.JobOutcome) -> None:
    await session.execute(
        text("INSERT INTO deliveries VALUES (:id, :a, :s, :e)"),
        {"id": job.id, "a": outcome.attempt, "s": outcome.state, "e": outcome.error},
    )


def _worker(
    engine: AsyncEngine, *kinds: jobs.JobKind, registry: CollectorRegistry | None = None, **settings: Any
) -> jobs.JobWorker:
    config = jobs.JobWorkerSettings(**{**FAST.__dict__, **settings})
    return jobs.JobWorker(
        session_factory(engine), kinds, registry or CollectorRegistry(), "test", settings=config
    )


async def _running(*workers: jobs.JobWorker) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(w.run()) for w in workers]


async def _stop(workers: list[jobs.JobWorker], tasks: list[asyncio.Task[None]]) -> None:
    for w in workers:
        w.stop()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def test_enqueueing_an_id_twice_leaves_one_job(engine: AsyncEngine) -> None:
    job = jobs.Job("send:u1:welcome", "webhook", {"user": "u1"})
    assert await _enqueue(engine, job, job) == {"send:u1:welcome"}
    assert await _enqueue(engine, jobs.Job("send:u1:welcome", "webhook", {"user": "other"})) == set()
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT payload, state FROM jobs"))).all()
    assert [(r.payload, r.state) for r in rows] == [({"user": "u1"}, "queued")]


async def test_the_effect_runs_after_the_enqueue_committed_and_outside_any_transaction(
    engine: AsyncEngine, database: str
) -> None:
    seen: list[dict[str, Any]] = []
    checker = await asyncpg.connect(plain_url(database))

    async def perform(job: jobs.ClaimedJob) -> None:
        started = await checker.fetchval("SELECT clock_timestamp()")
        await asyncio.sleep(0.3)  # an effect takes a while: a transaction held across it would show
        seen.append(
            {
                "order": await checker.fetchval(
                    "SELECT count(*) FROM orders WHERE id = $1", job.payload["order"]
                ),
                "state": await checker.fetchval("SELECT state FROM jobs WHERE id = $1", job.id),
                # Held across the effect, the claim's transaction would still lock the row.
                "lockable": await _lockable(checker, job.id),
                "worker_backends": await checker.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'jobs-under-test'"
                ),
                "open_since_before": await checker.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'jobs-under-test'"
                    " AND xact_start < $1",
                    started,
                ),
            }
        )

    async with session_factory(engine)() as s, s.begin():
        await s.execute(text("INSERT INTO orders VALUES ('o1')"))
        await jobs.enqueue(s, [jobs.Job("receipt:o1", "receipt", {"order": "o1"})])
    worker = _worker(engine, jobs.JobKind("receipt", perform))
    tasks = await _running(worker)
    try:
        await eventually(lambda: _state(engine, "receipt:o1", "succeeded"))
    finally:
        await _stop([worker], tasks)
        await checker.close()
    [check] = seen
    assert check["worker_backends"] >= 1, "the check must see the worker's connections"
    assert check["order"] == 1, "the enqueuing transaction had committed"
    assert check["state"] == "running", "the claim had committed"
    assert check["lockable"], "no transaction of the worker holds the job's row"
    assert check["open_since_before"] == 0, "no transaction of the worker spans the effect"


async def _lockable(conn: asyncpg.Connection, job_id: str) -> bool:
    try:
        async with conn.transaction():
            await conn.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE NOWAIT", job_id)
    except asyncpg.LockNotAvailableError:
        return False
    return True


async def test_a_worker_lost_mid_effect_is_replaced_and_the_receiver_gets_the_same_id(
    engine: AsyncEngine, receiver: Receiver
) -> None:
    hang = asyncio.Event()

    def post(then: Callable[[], Awaitable[object]]) -> Callable[[jobs.ClaimedJob], Awaitable[None]]:
        async def perform(job: jobs.ClaimedJob) -> None:
            async with httpx.AsyncClient() as client:
                answer = await client.post(receiver.url, json=job.payload, headers={"webhook-id": job.id})
            answer.raise_for_status()
            await then()

        return perform

    async def nothing() -> None:
        pass

    def webhook(perform: Callable[[jobs.ClaimedJob], Awaitable[None]]) -> jobs.JobKind:
        return jobs.JobKind("webhook", perform, timeout=2.0, on_outcome=_record_delivery)

    first = _worker(engine, webhook(post(hang.wait)))
    await _enqueue(engine, jobs.Job("hook:1", "webhook", {"n": 1}))
    [task] = await _running(first)
    await eventually(lambda: receiver.received["hook:1"] == 1)
    task.cancel()  # the worker dies mid-effect: no outcome is recorded, the lease runs on
    with pytest.raises(asyncio.CancelledError):
        await task
    lease_until = (await _job(engine, "hook:1"))["lease_until"]
    assert (await _job(engine, "hook:1"))["state"] == "running"

    second = _worker(engine, webhook(post(nothing)))
    tasks = await _running(second)
    try:
        row = await eventually(lambda: _state(engine, "hook:1", "succeeded"), timeout=15)
    finally:
        await _stop([second], tasks)
    assert receiver.received == {"hook:1": 2}, "re-run once, with the same idempotency key"
    assert receiver.at["hook:1"][1] >= lease_until.timestamp(), "not before the lost worker's lease ended"
    assert row["attempts"] == 2
    async with engine.connect() as conn:
        outcomes = (await conn.execute(text("SELECT attempt, state FROM deliveries"))).all()
    assert [tuple(r) for r in outcomes] == [(2, "succeeded")]


async def test_a_worker_lost_during_the_last_attempt_leaves_the_job_failed_not_run_again(
    engine: AsyncEngine,
) -> None:
    runs: Counter[str] = Counter()

    async def hangs(job: jobs.ClaimedJob) -> None:
        runs[job.id] += 1
        await asyncio.Event().wait()

    kind = jobs.JobKind("webhook", hangs, max_attempts=1, timeout=1.0)
    await _enqueue(engine, jobs.Job("hook:last", "webhook"))
    first = _worker(engine, kind)
    [task] = await _running(first)
    await eventually(lambda: runs["hook:last"] == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    second = _worker(engine, kind)
    tasks = await _running(second)
    try:
        row = await eventually(lambda: _state(engine, "hook:last", "failed"), timeout=15)
    finally:
        await _stop([second], tasks)
    assert runs["hook:last"] == 1
    assert "lease expired during attempt 1" in row["last_error"]


async def test_failures_retry_with_backoff_fail_for_good_and_replay(engine: AsyncEngine) -> None:
    started: dict[str, list[float]] = {}
    broken = {"flaky": 2, "hopeless": 99, "rejected": 0}

    async def perform(job: jobs.ClaimedJob) -> None:
        started.setdefault(job.id, []).append(time.monotonic())
        if job.id == "rejected" and broken["rejected"] == 0:
            raise PermanentError("receiver answered 410", "gone")
        if len(started[job.id]) <= broken[job.id]:
            raise ConnectionError(f"{job.id} is down")

    kind = jobs.JobKind(
        "webhook", perform, max_attempts=3, backoff_initial=0.2, backoff_max=0.4, on_outcome=_record_delivery
    )
    registry = CollectorRegistry()
    worker = _worker(engine, kind, registry=registry)
    await _enqueue(engine, *(jobs.Job(i, "webhook") for i in broken))
    tasks = await _running(worker)
    try:
        await eventually(lambda: _state(engine, "flaky", "succeeded"))
        hopeless = await eventually(lambda: _state(engine, "hopeless", "failed"))
        rejected = await eventually(lambda: _state(engine, "rejected", "failed"))
        assert (hopeless["attempts"], rejected["attempts"]) == (3, 1)
        assert "ConnectionError: hopeless is down" in hopeless["last_error"]
        assert rejected["last_error"] == "PermanentError: receiver answered 410: gone"
        gaps = [b - a for a, b in itertools.pairwise(started["flaky"])]
        assert gaps[0] >= 0.1 and gaps[1] >= 0.2, gaps  # backoff_delay(1) ≥ 0.1 s, (2) ≥ 0.2 s
        async with session_factory(engine)() as s:
            failed = await jobs.list_failed(s, kind="webhook")
        assert {(f.id, f.attempts, f.max_attempts) for f in failed} == {
            ("hopeless", 3, 3),
            ("rejected", 1, 3),
        }

        broken.update(hopeless=0, rejected=1)  # the receivers are fixed
        async with session_factory(engine)() as s, s.begin():
            assert await jobs.replay_failed(s, ids=["hopeless"]) == 1
        await eventually(lambda: _state(engine, "hopeless", "succeeded"))
        assert (await _job(engine, "rejected"))["state"] == "failed"
        async with session_factory(engine)() as s, s.begin():
            assert await jobs.replay_failed(s, kind="webhook") == 1
        await eventually(lambda: _state(engine, "rejected", "succeeded"))
    finally:
        await _stop([worker], tasks)
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT job_id, attempt, state FROM deliveries"))
        outcomes = Counter((r.job_id, r.attempt, r.state) for r in rows)
    assert outcomes == Counter(
        [
            ("flaky", 1, "retrying"),
            ("flaky", 2, "retrying"),
            ("flaky", 3, "succeeded"),
            ("hopeless", 1, "retrying"),
            ("hopeless", 2, "retrying"),
            ("hopeless", 3, "failed"),
            ("hopeless", 1, "succeeded"),  # replayed with a fresh count
            ("rejected", 1, "failed"),
            ("rejected", 1, "succeeded"),
        ]
    )
    labels = {"service": "test", "kind": "webhook"}
    assert registry.get_sample_value("userops_jobs_retried_total", labels) == 4
    assert registry.get_sample_value("userops_jobs_failed_total", labels) == 2
    assert registry.get_sample_value("userops_jobs_succeeded_total", labels) == 3


async def test_an_outcome_hook_that_fails_takes_the_state_change_with_it(engine: AsyncEngine) -> None:
    async def perform(job: jobs.ClaimedJob) -> None:
        pass

    async def hook(session: AsyncSession, job: jobs.ClaimedJob, outcome: jobs.JobOutcome) -> None:
        await _record_delivery(session, job, outcome)
        if job.id == "bad":
            raise ValueError("delivery row does not fit")

    worker = _worker(engine, jobs.JobKind("mail", perform, on_outcome=hook))
    await _enqueue(engine, jobs.Job("good", "mail"), jobs.Job("bad", "mail"))
    tasks = await _running(worker)
    try:
        await eventually(lambda: _state(engine, "good", "succeeded"))
        bad = await eventually(lambda: _state(engine, "bad", "failed"))
        assert not tasks[0].done()
    finally:
        await _stop([worker], tasks)
    assert bad["last_error"] == "on_outcome: ValueError: delivery row does not fit"
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT job_id, state FROM deliveries"))).all()
    assert [tuple(r) for r in rows] == [("good", "succeeded")], "the failed hook's row went with its state"


async def test_two_workers_never_run_one_job_at_once(engine: AsyncEngine) -> None:
    running: Counter[str] = Counter()
    runs: Counter[str] = Counter()
    overlap = {"max_per_job": 0, "max_total": 0}
    by_worker: Counter[int] = Counter()

    def performer(worker: int) -> Callable[[jobs.ClaimedJob], Awaitable[None]]:
        async def perform(job: jobs.ClaimedJob) -> None:
            running[job.id] += 1
            runs[job.id] += 1
            by_worker[worker] += 1
            overlap["max_per_job"] = max(overlap["max_per_job"], running[job.id])
            overlap["max_total"] = max(overlap["max_total"], sum(running.values()))
            await asyncio.sleep(0.01)
            running[job.id] -= 1

        return perform

    ids = [f"j{i}" for i in range(300)]
    await _enqueue(engine, *(jobs.Job(i, "webhook", {"i": i}) for i in ids))
    registry = CollectorRegistry()
    workers = [_worker(engine, jobs.JobKind("webhook", performer(n)), registry=registry) for n in range(2)]
    tasks = await _running(*workers)
    try:
        await eventually(lambda: sum(runs.values()) >= len(ids))
        await eventually(
            lambda: (
                registry.get_sample_value("userops_jobs_queued", {"service": "test", "kind": "webhook"}) == 0
            )
        )
    finally:
        await _stop(workers, tasks)
    assert set(runs) == set(ids) and set(runs.values()) == {1}
    assert overlap["max_per_job"] == 1
    assert overlap["max_total"] > 1, "jobs are performed concurrently"
    assert by_worker[0] > 0 and by_worker[1] > 0
    assert (
        registry.get_sample_value("userops_jobs_succeeded_total", {"service": "test", "kind": "webhook"})
        == 300
    )


async def test_succeeded_jobs_past_the_retention_are_purged(engine: AsyncEngine) -> None:
    async def perform(job: jobs.ClaimedJob) -> None:
        pass

    await _enqueue(engine, *(jobs.Job(f"old{i}", "mail") for i in range(25)), jobs.Job("new", "mail"))
    await _enqueue(engine, jobs.Job("failed-old", "mail"))
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE jobs SET state = CASE WHEN id = 'failed-old' THEN 'failed' ELSE 'succeeded' END,"
                " finished_at = now() - CASE WHEN id = 'new' THEN interval '1 day' ELSE interval '8 days' END"
            )
        )
    worker = _worker(engine, jobs.JobKind("mail", perform), purge_batch=10, retention=timedelta(days=7))
    tasks = await _running(worker)
    try:
        await eventually(lambda: _ids(engine, {"new", "failed-old"}))
    finally:
        await _stop([worker], tasks)


async def _ids(engine: AsyncEngine, expected: set[str]) -> bool:
    async with engine.connect() as conn:
        return set((await conn.execute(text("SELECT id FROM jobs"))).scalars()) == expected


async def test_a_job_runs_at_its_due_time_and_stop_lets_the_effect_in_flight_finish(
    engine: AsyncEngine,
) -> None:
    performed: dict[str, float] = {}
    release = asyncio.Event()

    async def perform(job: jobs.ClaimedJob) -> None:
        performed[job.id] = time.time()
        if job.id == "slow":
            await release.wait()

    async with session_factory(engine)() as s, s.begin():
        now = (await s.execute(text("SELECT now()"))).scalar_one()
        await jobs.enqueue(
            s, [jobs.Job("later", "mail", due_at=now + timedelta(seconds=1)), jobs.Job("slow", "mail")]
        )
    worker = _worker(engine, jobs.JobKind("mail", perform, timeout=10.0))
    tasks = await _running(worker)
    await eventually(lambda: "later" in performed)
    assert performed["later"] >= (now + timedelta(seconds=1)).timestamp()
    worker.stop()
    await asyncio.sleep(0.2)
    assert not tasks[0].done(), "stop waits for the effect in flight"
    release.set()
    await asyncio.wait_for(tasks[0], 10)
    assert (await _job(engine, "slow"))["state"] == "succeeded", "and records its outcome"
