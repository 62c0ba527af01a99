"""`userops deadletter list|replay` on a real broker, run as the operator runs it (a process).

Dead letters are written as the runner writes them (original key, value and headers plus the
headers of shared.runtime.deadletter); list filters them, replay sends the originals back.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from scripts.commands.deadletter import partitions_of
from scripts.stack.kafka import REPO_ROOT
from scripts.stack.procs import free_port
from shared import topics as t
from shared.kafka import create_producer
from shared.runtime import deadletter as dl
from tests.conftest import Stack

Headers = list[tuple[str, bytes]]


def userops(stack_bootstrap: str, dlq: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "USEROPS_KAFKA_BOOTSTRAP": stack_bootstrap, "USEROPS_DEADLETTER_TOPIC": dlq}
    return subprocess.run(
        [sys.executable, "-m", "scripts.cli", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def listed(stack: Stack, dlq: str, *filters: str) -> list[dict[str, Any]]:
    done = userops(stack.bootstrap, dlq, "deadletter", "list", "--json", *filters)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def letter_headers(source: str, offset: int, consumer: str, reason: str, error: str, at: datetime) -> Headers:
    return [
        (dl.SOURCE_TOPIC, source.encode()),
        (dl.SOURCE_PARTITION, b"0"),
        (dl.SOURCE_OFFSET, str(offset).encode()),
        (dl.CONSUMER, consumer.encode()),
        (dl.REASON, reason.encode()),
        (dl.ERROR, error.encode()),
        (dl.DEAD_LETTERED_AT, at.isoformat().encode()),
    ]


async def read_all(bootstrap: str, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
        assert len(tps) == 3
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[Any] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            for records in (await consumer.getmany(*remaining, timeout_ms=1000)).values():
                out.extend(records)
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return out
    finally:
        await consumer.stop()


async def test_list_filters_and_replay_restores_the_original_records(
    stack: Stack, topics: dict[str, str]
) -> None:
    dlq, events, lifecycle = topics[t.DEADLETTER], topics[t.EVENTS], topics[t.LIFECYCLE]
    now = datetime.now(UTC)
    originals: dict[bytes, tuple[bytes, Headers]] = {
        b"user-1": (
            b'{"event":"broken"',
            [("traceparent", b"00-aa-01"), ("content-type", b"application/json")],
        ),
        b"user-2": (b'{"revenue":"NaN"}', [("traceparent", b"00-bb-01")]),
    }
    producer = create_producer(stack.bootstrap)
    await producer.start()
    try:
        for (key, (value, headers)), offset, reason, error, at in zip(
            originals.items(),
            (7, 9),
            ("decode", "permanent"),
            ("ValueError: unterminated string", "PermanentError: revenue is not finite"),
            (now - timedelta(hours=3), now - timedelta(minutes=10)),
            strict=True,
        ):
            await producer.send_and_wait(
                dlq,
                value,
                key=key,
                headers=headers + letter_headers(events, offset, "segmenter", reason, error, at),
            )
        await producer.send_and_wait(
            dlq,
            b"{}",
            key=b"user-3",
            headers=letter_headers(
                lifecycle, 4, "rewards", "permanent", "unknown rule", now - timedelta(minutes=5)
            ),
        )
    finally:
        await producer.stop()

    everything = listed(stack, dlq)
    assert sorted((x["key"], x["source_topic"], x["source_offset"], x["consumer"]) for x in everything) == [
        ("user-1", events, 7, "segmenter"),
        ("user-2", events, 9, "segmenter"),
        ("user-3", lifecycle, 4, "rewards"),
    ]

    def keys(rows: list[dict[str, Any]]) -> list[str]:
        return sorted(x["key"] for x in rows)

    assert keys(listed(stack, dlq, "--consumer", "segmenter")) == ["user-1", "user-2"]
    assert keys(listed(stack, dlq, "--error", "NOT FINITE")) == ["user-2"]
    assert keys(listed(stack, dlq, "--reason", "decode")) == ["user-1"]
    assert keys(listed(stack, dlq, "--since", "1h")) == ["user-2", "user-3"]
    assert keys(listed(stack, dlq, "--until", (now - timedelta(hours=1)).isoformat())) == ["user-1"]
    assert keys(listed(stack, dlq, "--topic", lifecycle)) == ["user-3"]

    shown = userops(stack.bootstrap, dlq, "deadletter", "list", "--consumer", "rewards")
    assert shown.returncode == 0, shown.stderr
    header, row = shown.stdout.splitlines()
    assert header.split() == ["source", "consumer", "reason", "error", "dead_lettered_at", "key"]
    cells = re.split(r"\s{2,}", row)
    assert cells[:4] + cells[5:] == [
        f"{lifecycle}/0/4",
        "rewards",
        "permanent",
        "unknown rule",
        "user-3",
    ]
    assert abs(datetime.fromisoformat(cells[4]) - (now - timedelta(minutes=5))) < timedelta(seconds=1)

    dry = userops(stack.bootstrap, dlq, "deadletter", "replay", "--consumer", "segmenter", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would replay 2 dead letter(s)" in dry.stdout
    assert await read_all(stack.bootstrap, events) == []

    done = userops(stack.bootstrap, dlq, "deadletter", "replay", "--consumer", "segmenter")
    assert done.returncode == 0, done.stderr
    assert f"replayed 2 dead letter(s) to {events}" in done.stdout
    back = await read_all(stack.bootstrap, events)
    assert {r.key: (r.value, list(r.headers)) for r in back} == originals
    assert await read_all(stack.bootstrap, lifecycle) == []
    assert len(listed(stack, dlq)) == 3  # replay reads the dead letters, it does not consume them


def test_commands_fail_non_zero_with_a_reason() -> None:
    unreachable = f"127.0.0.1:{free_port()}"
    done = userops(unreachable, t.DEADLETTER, "deadletter", "list")
    assert done.returncode == 1
    assert f"error: cannot read the dead-letter topic from {unreachable}" in done.stderr
    bad = userops(unreachable, t.DEADLETTER, "deadletter", "replay", "--since", "yesterday")
    assert bad.returncode == 1
    assert "neither an ISO-8601 instant nor an age" in bad.stderr
