"""Nothing lost, nothing doubled: kill -9 at random points, and two instances on one group."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from tests.conftest import Stack, eventually, plain_url, unique
from tests.integration.runtime.test_runner import read_all
from tests.integration.segmenter.harness import SegmenterProcess, produce_events, segmenter_env, wire_event
from tests.integration.segmenter.workload import workload

EVENTS, LIFECYCLE = "userops.events.v1", "userops.lifecycle.v1"
CONFIG = Path(__file__).parents[3] / "config" / "segmenter.yaml"


async def _fetch(url: str, sql: str) -> list[Any]:
    conn = await asyncpg.connect(plain_url(url))
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def _drained(url: str, expected: int) -> bool:
    try:
        rows = await _fetch(
            url,
            "SELECT (SELECT count(*) FROM processed_messages) AS done,"
            " (SELECT count(*) FROM outbox) AS pending",
        )
    except asyncpg.UndefinedTableError:
        return False
    return bool(rows[0]["done"] == expected and rows[0]["pending"] == 0)


async def _processed(url: str) -> int:
    try:
        rows = await _fetch(url, "SELECT count(*) AS n FROM processed_messages")
    except asyncpg.UndefinedTableError:
        return 0
    return int(rows[0]["n"])


async def _outcome(url: str) -> dict[str, Any]:
    profiles = await _fetch(url, "SELECT user_id, stage, activated FROM profiles WHERE merged_into IS NULL")
    members = await _fetch(url, "SELECT user_id, segment FROM segment_members")
    history = await _fetch(url, "SELECT event_id FROM stage_history")
    return {
        "profiles": {r["user_id"]: (r["stage"], r["activated"]) for r in profiles},
        "segments": sorted((r["user_id"], r["segment"]) for r in members),
        "history": sorted(r["event_id"] for r in history),
    }


async def _stage_change_ids(bootstrap: str, topic: str, expect: int) -> list[str]:
    records = await read_all(bootstrap, topic, expect=expect, timeout=60)
    return [orjson.loads(r.value)["id"] for r in records if orjson.loads(r.value)["type"] == "stage_changed"]


async def test_kill_9_at_random_points_loses_and_doubles_nothing(
    stack: Stack, topics: dict[str, str], new_database: Any, tmp_path: Path
) -> None:
    events = workload(users=2000, events=20_000)
    await produce_events(stack.bootstrap, topics[EVENTS], events)
    crash_in, crash_out = unique("events-crash"), unique("lifecycle-crash")
    from scripts.stack.topics import ensure_topics

    await ensure_topics(stack.bootstrap, 3, (crash_in, crash_out))

    # A clean run.
    clean_db = await new_database()
    env, port = segmenter_env(
        bootstrap=stack.bootstrap, db_url=clean_db, topics=topics, config=CONFIG, group=unique("clean")
    )
    clean = SegmenterProcess(env, port, tmp_path / "clean.log")
    clean.start()
    started = asyncio.get_running_loop().time()
    try:
        await eventually(lambda: _drained(clean_db, len(events)), timeout=180, interval=0.5)
    finally:
        clean.terminate()
    print(f"clean run drained {len(events)} events in {asyncio.get_running_loop().time() - started:.1f}s")
    expected = await _outcome(clean_db)

    # The same events, killed with SIGKILL at random instants and restarted until drained.
    crash_db = await new_database()
    env, port = segmenter_env(
        bootstrap=stack.bootstrap,
        db_url=crash_db,
        topics={**topics, LIFECYCLE: crash_out},
        config=CONFIG,
        group=unique("crash"),
        extra={"USEROPS_SEGMENTER_INSTANCE_ID": "crashy", "USEROPS_SEGMENTER_SESSION_TIMEOUT_MS": "6000"},
    )

    async def stream() -> None:  # the events arrive while the service is being killed
        for i in range(0, len(events), 1000):
            await produce_events(stack.bootstrap, crash_in, events[i : i + 1000])
            await asyncio.sleep(0.2)

    streaming = asyncio.create_task(stream())
    rng = random.Random(11)
    mid_stream_kills = 0
    for attempt in range(40):
        proc = SegmenterProcess(env, port, tmp_path / f"crash-{attempt}.log")
        proc.start()
        await proc.wait_ready()
        await asyncio.sleep(rng.uniform(0.1, 1.2) if attempt < 8 else 5.0)
        done = await _processed(crash_db)
        if attempt >= 8 and await _drained(crash_db, len(events)):
            proc.terminate()
            break
        proc.kill9()
        mid_stream_kills += 0 < done < len(events)
    else:
        raise AssertionError("not drained after 40 restarts")
    await streaming
    assert mid_stream_kills >= 3, "the service should have been killed mid-stream several times"
    got = await _outcome(crash_db)
    assert got["profiles"] == expected["profiles"]
    assert got["segments"] == expected["segments"]
    assert got["history"] == expected["history"]

    # Downstream sees the same stage_changed events by id: none lost, none doubled (a re-sent
    # copy after a crash carries the same id, so consumers dedupe it).
    n = len(expected["history"])
    clean_ids = await _stage_change_ids(stack.bootstrap, topics[LIFECYCLE], n)
    crash_ids = await _stage_change_ids(stack.bootstrap, crash_out, n)
    assert len(clean_ids) == len(set(clean_ids)) == n
    assert set(crash_ids) == set(clean_ids)


async def _assigned_partitions(url: str) -> set[str]:
    async with httpx.AsyncClient() as c:
        body = (await c.get(f"{url}/ready")).json()
    return {p.rsplit(":", 1)[1] for p in body["checks"]["partitions"]}


async def _split(procs: list[SegmenterProcess]) -> list[set[str]] | None:
    parts = [await _assigned_partitions(p.url) for p in procs]
    return parts if all(parts) and set.union(*parts) == {"0", "1", "2"} else None


async def test_two_instances_split_partitions_and_act_once(
    stack: Stack, topics: dict[str, str], database: str, tmp_path: Path
) -> None:
    config = tmp_path / "segmenter.yaml"
    config.write_text(
        "lifecycle: {at_risk_after: 4s, dormant_after: 8s, churned_after: 60s, reactivation_gap: 30s,"
        " reactivated_hold: 5s, new_window: 1d, activated_window: 1d}\n"
        "activation: {any_of: [{event: Order Completed}]}\n"
    )
    group = unique("pair")
    procs = []
    for i in range(2):
        env, port = segmenter_env(
            bootstrap=stack.bootstrap, db_url=database, topics=topics, config=config, group=group
        )
        procs.append(SegmenterProcess(env, port, tmp_path / f"pair-{i}.log"))
    try:
        for p in procs:
            p.start()
        for p in procs:
            await p.wait_ready()
        # Both members joined: the group splits the three partitions between them.
        parts = await eventually(lambda: _split(procs), timeout=30)
        assert not parts[0] & parts[1]
        from datetime import UTC, datetime

        now = datetime.now(UTC)
        users = [f"p{i:03d}" for i in range(120)]
        await produce_events(
            stack.bootstrap,
            topics[EVENTS],
            [wire_event(u, "Order Completed", now, mid=f"o-{u}") for u in users],
        )
        await eventually(lambda: _drained(database, len(users)), timeout=60)
        # Timers: every user goes activated -> at_risk -> dormant by time alone, fired once each.
        await eventually(lambda: _all_dormant(database, len(users)), timeout=60, interval=0.5)
    finally:
        for p in procs:
            p.terminate()
    rows = await _fetch(
        database, "SELECT user_id, from_stage, to_stage FROM stage_history ORDER BY user_id, at"
    )
    by_user: dict[str, list[tuple[str | None, str]]] = {}
    for r in rows:
        by_user.setdefault(r["user_id"], []).append((r["from_stage"], r["to_stage"]))
    assert set(by_user) == set(users)
    assert all(
        moves == [(None, "activated"), ("activated", "at_risk"), ("at_risk", "dormant")]
        for moves in by_user.values()
    ), by_user
    ids = await _stage_change_ids(stack.bootstrap, topics[LIFECYCLE], expect=len(rows))
    assert len(set(ids)) == len(rows) == 3 * len(users)


async def _all_dormant(url: str, n: int) -> bool:
    rows = await _fetch(url, "SELECT count(*) AS n FROM profiles WHERE stage = 'dormant'")
    return bool(rows[0]["n"] == n)
