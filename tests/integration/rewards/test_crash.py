"""kill -9 at random instants while events stream in: the ledger and the emitted rewards events are
identical, by id, to those of a run that was never interrupted.

The stream has no cross-user effects (no referrals, no exhausted budget) and lifecycle records
only for users without events: such effects depend on how two partitions interleave, which
differs between any two runs, crashed or not.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from scripts.stack.topics import ensure_topics
from tests.conftest import Stack, eventually, unique
from tests.integration.ingest.harness import read_topic
from tests.integration.rewards.conftest import RewardsFactory
from tests.integration.rewards.harness import (
    RewardsProcess,
    ledger_balanced,
    query,
    rewards_env,
    stage_record,
)
from tests.integration.segmenter.harness import produce_events, wire_event

KILLS = 5
LEDGER = """
    SELECT t.id, t.user_id, t.kind, t.at, t.rule_id, t.lot_id, t.reverses, t.source_id, t.award_key,
        array_agg(e.account_kind || '/' || e.account_owner || '/' || e.amount ORDER BY e.account_kind, e.account_owner)
            AS entries
    FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
    GROUP BY t.id
"""


def stream(now: datetime, users: int = 150) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(7)
    events: list[dict[str, Any]] = []
    for u in range(users):
        t = now - timedelta(hours=2) + timedelta(seconds=u)
        for i in range(rng.randint(8, 16)):
            t += timedelta(minutes=rng.randint(1, 5))
            kind = rng.choice(["Lesson Completed", "Lesson Completed", "Checked In", "Order Completed"])
            props = (
                {"revenue": rng.randint(1, 300), "order_id": f"o{u}-{i}"} if kind == "Order Completed" else {}
            )
            events.append(wire_event(f"user{u}", kind, t, mid=f"e{u}-{i}", properties=props))
    lifecycle = [
        stage_record(f"newbie{u}", "activated", now - timedelta(minutes=u), mid=f"a{u}") for u in range(50)
    ]
    return events, lifecycle


async def _processed(db: str) -> int:
    return int((await query(db, "SELECT count(*) AS n FROM processed_messages"))[0]["n"])


async def _drained(db: str, total: int) -> bool:
    outbox = (await query(db, "SELECT count(*) AS n FROM outbox"))[0]["n"]
    return await _processed(db) == total and outbox == 0


def _by_id(records: list[Any]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for r in records:
        rid = orjson.loads(r.value)["id"]
        assert out.setdefault(rid, r.value) == r.value, f"two different records with id {rid}"
    return out


async def test_kill_9_while_streaming_changes_nothing(
    stack: Stack,
    topics: dict[str, str],
    database: str,
    new_database: Any,
    rewards_factory: RewardsFactory,
    tmp_path: Path,
) -> None:
    from tests.integration.rewards.conftest import EXAMPLE_CONFIG

    clean_db = await new_database()
    clean_topics = {**topics, "userops.rewards.v1": unique("rewards.clean")}
    await ensure_topics(stack.bootstrap, 3, (clean_topics["userops.rewards.v1"],))
    env, port = rewards_env(
        bootstrap=stack.bootstrap,
        db_url=clean_db,
        topics=clean_topics,
        config=EXAMPLE_CONFIG,
        group=unique("clean"),
    )
    clean = RewardsProcess(env, port, tmp_path / "clean.log")
    crashing = rewards_factory(
        USEROPS_REWARDS_MAX_BATCH="200",
        USEROPS_REWARDS_INSTANCE_ID="crashing",
        USEROPS_REWARDS_SESSION_TIMEOUT_MS="6000",
    )
    try:
        clean.start()
        crashing.start()
        await clean.wait_ready()
        await crashing.wait_ready()
        events, lifecycle = stream(datetime.now(UTC))
        total = len(events) + len(lifecycle)
        chunks = [events[i : i + 60] for i in range(0, len(events), 60)]

        async def produce() -> None:
            await produce_events(stack.bootstrap, topics["userops.lifecycle.v1"], lifecycle)
            for chunk in chunks:
                await produce_events(stack.bootstrap, topics["userops.events.v1"], chunk)
                await asyncio.sleep(0.6)

        producing = asyncio.create_task(produce())
        rng = random.Random()
        kills = 0
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.3, 2.0))
            crashing.kill9()
            kills += 1
            crashing.start()
            await crashing.wait_ready()
        await producing
        assert kills == KILLS
        await eventually(lambda: _drained(clean_db, total), 120)
        await eventually(lambda: _drained(database, total), 120)

        crashed_ledger = {r["id"]: tuple(r) for r in await query(database, LEDGER)}
        clean_ledger = {r["id"]: tuple(r) for r in await query(clean_db, LEDGER)}
        assert len(clean_ledger) > len(events) // 2
        assert crashed_ledger == clean_ledger
        balances = "SELECT user_id, available, pending, held, debt FROM accounts ORDER BY user_id"
        assert await query(database, balances) == await query(clean_db, balances)
        emitted = _by_id(await read_topic(stack.bootstrap, topics["userops.rewards.v1"]))
        expected = _by_id(await read_topic(stack.bootstrap, clean_topics["userops.rewards.v1"]))
        assert emitted == expected
        assert await ledger_balanced(database)
    finally:
        clean.kill9()
