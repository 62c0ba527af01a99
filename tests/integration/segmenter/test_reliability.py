"""Nothing lost, nothing doubled: kill -9 at random points while events stream in, and two
instances on one group."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import orjson
from aiokafka import AIOKafkaConsumer

from scripts.stack.topics import ensure_topics
from shared.kafka import create_producer
from tests.conftest import Stack, eventually, plain_url, unique
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
    """Everything a run leaves that must not depend on where it was killed, keyed by id."""
    profiles = await _fetch(
        url,
        "SELECT user_id, stage, activated, first_seen, last_activity_at, merged_into FROM profiles",
    )
    members = await _fetch(url, "SELECT user_id, segment FROM segment_members")
    history = await _fetch(url, "SELECT event_id, user_id, from_stage, to_stage FROM stage_history")
    days = await _fetch(url, "SELECT user_id, day FROM activity_days")
    return {
        "profiles": {r["user_id"]: tuple(r)[1:] for r in profiles},
        "segments": sorted((r["user_id"], r["segment"]) for r in members),
        "history": sorted(tuple(r) for r in history),
        "days": sorted(tuple(r) for r in days),
    }


async def _stage_change_ids(bootstrap: str, topic: str) -> list[str]:
    """The ids of every `stage_changed` record on `topic` (read to its end), duplicates kept."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not consumer.assignment():  # the partitions arrive with the first metadata
            assert loop.time() < deadline, f"no partitions for {topic}"
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        parts = consumer.assignment()
        ends = await consumer.end_offsets(list(parts))
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            assert loop.time() < deadline, f"{topic} not read to its end in 30 s"
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    values = [orjson.loads(r.value) for r in records]
    return [v["id"] for v in values if v["type"] == "stage_changed"]


async def _produce_paced(
    bootstrap: str, topic: str, events: list[dict[str, Any]], chunk: int, pace: float, counter: list[int]
) -> None:
    """Produce `events` into `topic` in chunks `pace` seconds apart, counting into `counter[0]`."""
    producer = create_producer(bootstrap, linger_ms=10)
    await producer.start()
    try:
        for i in range(0, len(events), chunk):
            sent = [
                await producer.send(
                    topic, orjson.dumps(e), key=(e.get("userId") or e["anonymousId"]).encode()
                )
                for e in events[i : i + chunk]
            ]
            await asyncio.gather(*sent)
            counter[0] += len(sent)
            await asyncio.sleep(pace)
    finally:
        await producer.stop()


@dataclass(frozen=True)
class _Kill:
    produced: int  # events in the crash run's topic when the process was killed
    processed: int  # events it had applied by then
    streaming: bool  # events were flowing into the consumed topic at that instant


MIN_KILLS = 5


async def test_kill_9_at_random_points_while_events_stream_in_loses_and_doubles_nothing(
    stack: Stack, topics: dict[str, str], new_database: Any, tmp_path: Path
) -> None:
    # Anonymous visitors arrive in the head; half of them sign up in the tail, which is produced
    # only once the head is applied: an alias and the visit it merges are on different
    # partitions (keyed by different ids), so this keeps their order the same in both runs.
    anchor = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=12)
    visits, signups = [], []
    for i in range(200):
        ts = anchor - timedelta(days=1 + i % 9, seconds=i)
        stamp = ts.isoformat()
        visits.append(
            {
                "type": "page",
                "messageId": f"v-{i}",
                "anonymousId": f"anon-{i}",
                "name": "Landing",
                "timestamp": stamp,
                "receivedAt": stamp,
            }
        )
        if i % 2 == 0:
            signups.append(
                wire_event(f"user-{i:05d}", "Signed Up", ts, mid=f"su-{i}", anonymousId=f"anon-{i}")
            )
    load = workload(users=1000, events=5_000)
    head = load[:4_000] + visits
    events = head + signups + load[4_000:]

    # A clean run over the events topic.
    await produce_events(stack.bootstrap, topics[EVENTS], head)
    clean_db = await new_database()
    env, port = segmenter_env(
        bootstrap=stack.bootstrap, db_url=clean_db, topics=topics, config=CONFIG, group=unique("clean")
    )
    clean = SegmenterProcess(env, port, tmp_path / "clean.log")
    clean.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await eventually(lambda: _drained(clean_db, len(head)), timeout=120, interval=0.5)
        await produce_events(stack.bootstrap, topics[EVENTS], events[len(head) :])
        await eventually(lambda: _drained(clean_db, len(events)), timeout=60, interval=0.5)
    finally:
        clean.terminate()
    print(f"clean run drained {len(events)} events in {loop.time() - started:.1f}s")
    expected = await _outcome(clean_db)

    # The crash run consumes its own topic, which receives the same events while the service is
    # killed with SIGKILL at random instants and restarted. Output ids derive from the topic's
    # contract name, not its physical name, so both runs must produce the same ids.
    crash_in, crash_out = unique("events-crash"), unique("lifecycle-crash")
    await ensure_topics(stack.bootstrap, 3, (crash_in, crash_out))
    crash_db = await new_database()
    started = loop.time()
    env, port = segmenter_env(
        bootstrap=stack.bootstrap,
        db_url=crash_db,
        topics={**topics, EVENTS: crash_in, LIFECYCLE: crash_out},
        config=CONFIG,
        group=unique("crash"),
        extra={"USEROPS_SEGMENTER_INSTANCE_ID": "crashy", "USEROPS_SEGMENTER_SESSION_TIMEOUT_MS": "6000"},
    )
    # One portion of the stream per process life: each life starts producing its portion once
    # the process is ready, and is killed at a random instant while that portion flows in. The
    # head comes in MIN_KILLS portions; the tail (the sign-ups first) only once the head is
    # applied, since an alias and the visit it merges are on different partitions.
    step = -(-len(head) // MIN_KILLS)
    portions = [head[i : i + step] for i in range(0, len(head), step)]
    tail = events[len(head) :]
    produced = [0]
    rng = random.Random(11)
    kills: list[_Kill] = []
    for attempt in range(30):
        proc = SegmenterProcess(env, port, tmp_path / f"crash-{attempt}.log")
        proc.start()
        await proc.wait_ready()
        portion: list[dict[str, Any]] = []
        if portions:
            portion = portions.pop(0)
        elif tail and await _processed(crash_db) >= len(head):
            portion, tail = tail, []
        before = produced[0]
        producing = asyncio.create_task(
            _produce_paced(stack.bootstrap, crash_in, portion, chunk=50, pace=0.15, counter=produced)
        )
        await asyncio.sleep(rng.uniform(0.2, 1.5))
        streaming_now = not producing.done()
        processed = await _processed(crash_db)
        at_kill = produced[0]
        proc.kill9()
        kills.append(_Kill(at_kill, processed, streaming_now and at_kill > before))
        await producing  # the rest of the portion lands while the service is down
        if not portions and not tail and len(kills) >= MIN_KILLS:
            break
    else:
        raise AssertionError(f"the stream did not finish: {produced[0]}/{len(events)} produced")
    final = SegmenterProcess(env, port, tmp_path / "crash-final.log")
    final.start()
    try:
        await eventually(lambda: _drained(crash_db, len(events)), timeout=90, interval=0.5)
    finally:
        final.terminate()
    print(f"crash run: {loop.time() - started:.1f}s, kills (produced, processed): {kills}")

    mid_stream = [k for k in kills if k.streaming]
    assert len(mid_stream) >= MIN_KILLS, f"kills while events were flowing into the topic: {kills}"
    assert sum(k.processed > 0 for k in mid_stream) >= MIN_KILLS - 1, "kills should land mid-processing"
    got = await _outcome(crash_db)
    assert got["profiles"] == expected["profiles"]
    assert got["segments"] == expected["segments"]
    assert got["history"] == expected["history"]
    assert got["days"] == expected["days"]
    assert any(r[4] is not None for r in got["profiles"].values()), "the workload merges profiles"

    # Downstream sees the same stage_changed events by id: none lost, none doubled (a copy re-sent
    # after a crash carries the same id, so consumers dedupe it).
    clean_ids = await _stage_change_ids(stack.bootstrap, topics[LIFECYCLE])
    crash_ids = await _stage_change_ids(stack.bootstrap, crash_out)
    assert len(clean_ids) == len(set(clean_ids)) == len(expected["history"])
    assert set(crash_ids) == set(clean_ids)


async def _assigned_partitions(url: str) -> set[str]:
    async with httpx.AsyncClient() as c:
        body = (await c.get(f"{url}/ready")).json()
    return {p.rsplit(":", 1)[1] for p in body["checks"]["consumer_detail"]["partitions"]}


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
    ids = await _stage_change_ids(stack.bootstrap, topics[LIFECYCLE])
    assert len(set(ids)) == len(rows) == 3 * len(users)


async def _all_dormant(url: str, n: int) -> bool:
    rows = await _fetch(url, "SELECT count(*) AS n FROM profiles WHERE stage = 'dormant'")
    return bool(rows[0]["n"] == n)
