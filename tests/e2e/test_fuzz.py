"""End-to-end fuzz: thousands of odd events through the real ingest and segmenter processes.

Seeded (`USEROPS_FUZZ_SEED`, `USEROPS_FUZZ_EVENTS`), so a failure reproduces. Every event ingest
acknowledged is either applied or dead-lettered with a reason; the segmenter's `/ready` stays
200 and its process alive throughout; and its profiles equal an independent replay
(`services.segmenter.domain.replay.replay`) of the acknowledged events that were not
dead-lettered, each once per (partition key, messageId) as the consumer dedupes them. Both
sides are compared at one common instant (`apply_timer` settles time-driven stages), since the
live service decides at its wall clock and replay at each event's time; an event more than
`future_tolerance` ahead of its `receivedAt` is replayed at `receivedAt`, as the live service
takes such an event at its own now.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from scripts.stack.kafka import REPO_ROOT
from services.segmenter.config import SegmenterConfig, load_config
from services.segmenter.domain.decide import apply_timer
from services.segmenter.domain.replay import replay
from services.segmenter.domain.state import UserState
from shared import topics as contract
from shared.events import Event, InvalidEvent
from shared.runtime import deadletter
from tests.conftest import Stack, eventually, unique
from tests.e2e.fuzz_events import Call, generate, poison_records
from tests.integration.ingest.harness import IngestProcess, basic_auth, read_topic
from tests.integration.segmenter.harness import SegmenterProcess, produce_events, segmenter_env

SEED = int(os.environ.get("USEROPS_FUZZ_SEED", "20261201"))
EVENTS = int(os.environ.get("USEROPS_FUZZ_EVENTS", "3000"))
CONFIG = REPO_ROOT / "config" / "segmenter.yaml"
CLOCK_SLACK = timedelta(minutes=2)  # the live service's now vs an event's receivedAt


async def send(url: str, calls: list[Call]) -> tuple[int, list[str]]:
    """Post every call; the number of events acknowledged, and the refusals' messages."""
    accepted, refusals = 0, []
    async with httpx.AsyncClient(base_url=url, headers=basic_auth(), timeout=60) as client:
        for call in calls:
            response = await client.post(call.path, content=orjson.dumps(call.body))
            assert response.status_code in (200, 400), (response.status_code, response.text, call)
            if call.expect_refused:
                assert response.status_code == 400, f"accepted what breaks a limit: {call}"
            if response.status_code == 200:
                accepted += call.events
            else:
                refusals.append(response.json()["message"])
    return accepted, refusals


async def consumed(segmenter: SegmenterProcess, topic: str) -> float:
    """Messages of `topic` the segmenter applied plus those it dead-lettered (its metrics)."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{segmenter.url}/metrics")).text
    total = 0.0
    pattern = r"^userops_consumer_messages_(?:processed|deadlettered)_total\{([^}]*)\} (\S+)$"
    for labels, value in re.findall(pattern, text, re.MULTILINE):
        if f'topic="{topic}"' in labels:
            total += float(value)
    return total


async def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets on `topic`, by partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {
        tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0
    }


async def watch_ready(segmenter: SegmenterProcess, seen: list[str], stop: asyncio.Event) -> None:
    """Poll `/ready` until `stop`; note every answer that is not 200."""
    async with httpx.AsyncClient(timeout=5) as client:
        while not stop.is_set():
            try:
                status = (await client.get(f"{segmenter.url}/ready")).status_code
            except httpx.TransportError as exc:
                status = -1
                seen.append(f"{datetime.now(UTC):%H:%M:%S.%f} unreachable: {exc!r}")
            if status not in (200, -1):
                seen.append(f"{datetime.now(UTC):%H:%M:%S.%f} {status}")
            await asyncio.sleep(0.25)


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {key: value.decode(errors="replace") for key, value in record.headers}


def expected_events(
    published: list[ConsumerRecord[bytes, bytes]], dead: set[tuple[int, int]], cfg: SegmenterConfig
) -> tuple[list[Event], list[str]]:
    """What the consumer should have applied, and the published events it could not decode."""
    applied: list[Event] = []
    undecodable: list[str] = []
    seen: set[tuple[str, str]] = set()
    for record in sorted(published, key=lambda r: (r.partition, r.offset)):
        if (record.partition, record.offset) in dead:
            continue
        try:
            event = Event.from_bytes(record.value)
        except InvalidEvent as exc:
            undecodable.append(f"p{record.partition}@{record.offset}: {exc}")
            continue
        if (event.key, event.message_id) in seen:  # a resent messageId: applied once
            continue
        seen.add((event.key, event.message_id))
        if event.timestamp > event.received_at + cfg.future_tolerance:
            event = replace(event, timestamp=event.received_at)
        applied.append(event)
    return applied, undecodable


def summary(state: UserState, cfg: SegmenterConfig, at: datetime) -> dict[str, Any]:
    """What must not depend on arrival order: the stage at `at`, and the facts behind it."""
    settled = apply_timer(state.copy(), cfg, at).state
    return {
        "stage": settled.stage,
        "activated": settled.activated,
        "orders": settled.orders,
        "revenue": settled.revenue,
        "first_seen": settled.first_seen,
        "last_seen": settled.last_seen,
        "signup_event_at": settled.signup_event_at,
    }  # not `aliases`: which anonymous profiles existed to be merged depends on arrival order


def differs(live: Any, expected: Any) -> bool:
    if isinstance(live, float) and isinstance(expected, float):
        return not math.isclose(live, expected, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(live, datetime) and isinstance(expected, datetime):
        return abs(live - expected) > CLOCK_SLACK
    return bool(live != expected)


def describe(event: Event) -> str:
    body = {k: v for k, v in event.raw.items() if k not in ("context", "integrations", "sourceId")}
    return orjson.dumps(body).decode()[:400]


async def live_profiles(database: str) -> dict[str, UserState]:
    """The segmenter's profiles that were not merged into another, by id."""
    engine = create_async_engine(database)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT user_id, state FROM profiles WHERE merged_into IS NULL"))
            return {user: UserState.from_json(state) for user, state in rows if state}
    finally:
        await engine.dispose()


async def test_fuzzed_events_are_applied_or_dead_lettered_and_profiles_match_a_replay(
    stack: Stack, topics: dict[str, str], database: str, tmp_path: Path
) -> None:
    events_topic, dead_topic = topics[contract.EVENTS], topics[contract.DEADLETTER]
    ingest = await IngestProcess(stack.bootstrap, events_topic, tmp_path / "ingest.log").start()
    group = unique("fuzz")
    env, port = segmenter_env(
        bootstrap=stack.bootstrap, db_url=database, topics=topics, config=CONFIG, group=group
    )
    segmenter = SegmenterProcess(env, port, tmp_path / "segmenter.log")
    segmenter.start()
    not_ready: list[str] = []
    stop = asyncio.Event()
    try:
        await segmenter.wait_ready()
        watcher = asyncio.create_task(watch_ready(segmenter, not_ready, stop))
        calls = generate(SEED, EVENTS)
        half = len(calls) // 2
        accepted, refusals = await send(ingest.url, calls[:half])
        poison = poison_records(datetime.now(UTC))
        await produce_events(stack.bootstrap, events_topic, poison)
        more, refused = await send(ingest.url, calls[half:])
        accepted, refusals = accepted + more, refusals + refused
        published = await read_topic(stack.bootstrap, events_topic)
        assert len(published) == accepted + len(poison), "ingest published other than it acknowledged"

        ends: dict[int, int] = {}
        for record in published:
            ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)

        async def caught_up() -> bool:
            assert segmenter.proc is not None and segmenter.proc.poll() is None, segmenter.log.read_text()[
                -3000:
            ]
            return await committed(stack.bootstrap, group, events_topic) == ends

        await eventually(caught_up, timeout=240, interval=0.5)
        counted = await consumed(segmenter, events_topic)
        stop.set()
        await watcher
        assert segmenter.proc is not None and segmenter.proc.poll() is None, "the consumer stopped"
        live = await live_profiles(database)
    finally:
        stop.set()
        segmenter.terminate()
        ingest.stop()
    print(f"fuzz seed={SEED}: {accepted} events acknowledged, {len(refusals)} requests refused")
    assert not_ready == [], f"/ready was not 200 during the run: {not_ready[:10]}"

    dead_letters = [r for r in await read_topic(stack.bootstrap, dead_topic)]
    dead = set()
    for record in dead_letters:
        headers = headers_of(record)
        assert headers.get(deadletter.REASON), f"a dead letter without a reason: {headers}"
        assert headers.get(deadletter.SOURCE_TOPIC) == events_topic
        dead.add((int(headers[deadletter.SOURCE_PARTITION]), int(headers[deadletter.SOURCE_OFFSET])))
    reasons = sorted(
        {
            headers_of(r)[deadletter.REASON] + ": " + headers_of(r).get(deadletter.ERROR, "")[:200]
            for r in dead_letters
        }
    )
    print(f"dead-lettered: {len(dead)} {reasons[:10]}")
    assert len(dead) >= len(poison), "the records that break the contract were not all dead-lettered"

    cfg = load_config(CONFIG)
    applied, undecodable = expected_events(published, dead, cfg)
    assert undecodable == [], f"acknowledged, undecodable, and not dead-lettered: {undecodable[:5]}"
    result = replay(applied, cfg)
    at = max([datetime.now(UTC), *(e.timestamp for e in applied)]) + timedelta(seconds=1)

    stages = Counter(summary(state, cfg, at)["stage"] for state in live.values())
    print(f"profiles compared: {len(live)} live, {len(result.states)} replayed; live stages {dict(stages)}")
    findings = []
    if counted != len(published):
        distinct = len({(r.partition, r.offset) for r in published}) - len(dead)
        findings.append(
            f"processed + dead-lettered = {counted:.0f}, published {len(published)} "
            f"(dead-lettered {len(dead)}, distinct (key, messageId) applied {len(applied)}, records {distinct})"
        )
    only_live, only_replay = sorted(set(live) - set(result.states)), sorted(set(result.states) - set(live))
    if only_live or only_replay:
        findings.append(f"profiles only live: {only_live[:10]!r}; only in the replay: {only_replay[:10]!r}")
        for user in (only_live + only_replay)[:3]:
            mine = [describe(e) for e in applied if user in (e.key, result.links.get(e.key))]
            findings.append(f"  {user!r}'s events:\n    " + "\n    ".join(mine[:20]))
    for user in sorted(set(live) & set(result.states)):
        got, want = summary(live[user], cfg, at), summary(result.states[user], cfg, at)
        wrong = {k: (got[k], want[k]) for k in got if differs(got[k], want[k])}
        if wrong:
            mine = [describe(e) for e in applied if user in (e.key, result.links.get(e.key))]
            findings.append(
                f"{user!r}: (live, replay) {wrong}\n  its events:\n    " + "\n    ".join(mine[:20])
            )
    assert not findings, f"seed {SEED}: {len(findings)} findings:\n" + "\n".join(findings[:8])
