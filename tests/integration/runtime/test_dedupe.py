"""Dedupe keys on a real PostgreSQL and a real broker: any input id fits, purge keeps up, and the
retention is checked against the topics' own (DESIGN.md §3.1)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text

from shared.runtime import dedupe
from shared.runtime.db import create_engine, session_factory
from shared.runtime.errors import ConsumerFailed
from tests.conftest import Stack, eventually, unique
from tests.integration.runtime.harness import counters, create_schema, running_service
from tests.integration.runtime.test_runner import DLQ, EVENTS, OUT, produce


async def test_input_ids_of_any_length_can_be_claimed(database: str) -> None:
    engine = create_engine(database, pool_size=2)
    await create_schema(engine)
    sessions = session_factory(engine)
    long_ids = ["u" * 3_000, "é" * (512 * 1024), "x" * (1024 * 1024)]
    try:
        async with sessions() as s, s.begin():
            assert await dedupe.claim(s, "c", long_ids) == set(long_ids)
        async with sessions() as s, s.begin():
            assert await dedupe.claim(s, "c", long_ids) == set()
    finally:
        await engine.dispose()


async def test_a_user_id_of_3000_characters_is_processed_like_any_other(
    stack: Stack, topics: dict[str, str], database: str
) -> None:
    user = "u" * 3_000
    await produce(
        stack.bootstrap,
        topics[EVENTS],
        [{"id": "m-1", "user": user, "n": 5}, {"id": "m-2", "user": "v", "n": 1}],
    )
    async with running_service(
        stack.bootstrap, database, unique("g"), topics[EVENTS], topics[OUT], topics[DLQ]
    ) as svc:
        await eventually(lambda: _eq(counters(svc.engine), {user: (5, 1), "v": (1, 1)}))
        assert svc.runner.ready


async def _eq(coro: object, expected: object) -> bool:
    return bool(await coro == expected)  # type: ignore[misc]


async def test_purge_removes_every_old_key_of_its_consumer_only(database: str) -> None:
    engine = create_engine(database, pool_size=2)
    await create_schema(engine)
    async with engine.begin() as conn:
        # 25,000 old keys (2.5 purge batches) and a recent one for "c"; old keys for "other".
        await conn.execute(
            text(
                "INSERT INTO processed_messages (consumer, key_hash, processed_at) "
                "SELECT c, sha256((c || i)::bytea), now() - interval '8 days' "
                "FROM unnest(ARRAY['c', 'other']) AS c, generate_series(1, 25000) AS i"
            )
        )
    sessions = session_factory(engine)
    async with sessions() as s, s.begin():
        await dedupe.claim(s, "c", ["recent"])
    from prometheus_client import CollectorRegistry

    from shared.runtime.metrics import RuntimeMetrics
    from shared.runtime.runner import ConsumerRunner, RunnerSettings
    from tests.integration.runtime.harness import CountingHandler

    runner: ConsumerRunner[object] = ConsumerRunner(
        RunnerSettings(consumer="c", topics=["unused"], bootstrap="127.0.0.1:9", dedupe_purge_batch=10_000),
        CountingHandler("unused"),  # type: ignore[arg-type]
        sessions,
        None,
        RuntimeMetrics.create(CollectorRegistry(), "test"),
        deadletters=object(),  # type: ignore[arg-type]
    )
    try:
        assert await runner.purge_once() == 25_000
        async with engine.connect() as conn:
            left: dict[str, int] = dict(
                (
                    await conn.execute(text("SELECT consumer, count(*) FROM processed_messages GROUP BY 1"))
                ).all()
            )
    finally:
        await engine.dispose()
    assert left == {"c": 1, "other": 25_000}


async def _topic(bootstrap: str, retention_ms: int) -> str:
    name = f"retention.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs={"retention.ms": str(retention_ms)})])
    finally:
        await admin.close()
    return name


@pytest.mark.parametrize(
    ("retention_ms", "setting", "message"),
    [
        (2 * 86_400_000, timedelta(days=1), r"2 days, 0:00:00 \(retention.ms\).*dedupe_retention is 1 day"),
        (-1, timedelta(days=3650), r"infinite \(retention.ms=-1\).*dedupe_retention is 3650 days"),
    ],
)
async def test_start_fails_when_a_topic_keeps_records_longer_than_dedupe_keys(
    stack: Stack, topics: dict[str, str], database: str, retention_ms: int, setting: timedelta, message: str
) -> None:
    topic = await _topic(stack.bootstrap, retention_ms)
    async with running_service(
        stack.bootstrap, database, unique("g"), topic, topics[OUT], topics[DLQ], dedupe_retention=setting
    ) as svc:
        svc.expect_failure = True
        with pytest.raises(ConsumerFailed, match=rf"topic '{topic}' keeps records for {message}"):
            await asyncio.wait_for(asyncio.shield(svc.runner_task), 30)
        assert not svc.runner.ready
        assert svc.assignments == []  # never joined the group


async def test_start_succeeds_when_dedupe_keys_outlive_the_topic(
    stack: Stack, topics: dict[str, str], database: str
) -> None:
    forever = await _topic(stack.bootstrap, -1)
    day = await _topic(stack.bootstrap, 86_400_000)
    # The first run sees one message; the second (another topic, the same database) one more.
    for topic, setting, expected in ((forever, None, 1), (day, timedelta(days=1), 2)):
        await produce(stack.bootstrap, topic, [{"id": f"m-{expected}", "user": "u", "n": 1}])
        async with running_service(
            stack.bootstrap, database, unique("g"), topic, topics[OUT], topics[DLQ], dedupe_retention=setting
        ) as svc:
            await eventually(lambda: svc.runner.ready)
            await eventually(lambda n=expected: _eq(counters(svc.engine), {"u": (n, n)}))
