"""`userops deadletter list|replay`: see why records were dead-lettered, and send them back.

`list` reads the dead-letter topic from the beginning up to its end at the time of the call
with a throwaway consumer (no group, nothing committed), so it never disturbs anything.
`replay` republishes each selected record to its source topic with its original key, value and
headers (the dead-letter headers stripped) through the idempotent `acks=all` producer. A
dead-lettered input was never claimed, so the consumer applies the replayed copy once the cause
is fixed; replaying the same letter twice is harmless (the second copy is deduplicated).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import orjson
import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from scripts.commands import fail
from scripts.commands.dead_letters import DeadLetter, Selection, parse, parse_instant, table
from shared import topics
from shared.config import BaseServiceSettings
from shared.kafka import create_producer

deadletter = typer.Typer(
    help="List and replay dead-lettered records (the dead-letter topic).", no_args_is_help=True
)


class DeadLetterSettings(BaseServiceSettings):
    """`USEROPS_KAFKA_BOOTSTRAP` and `USEROPS_DEADLETTER_TOPIC`, as the services read them."""

    deadletter_topic: str = topics.DEADLETTER


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    """The partition ids of `topic`; LookupError if the broker does not know it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    try:
        await admin.start()
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    for entry in described:
        if entry.get("topic", entry.get("name")) == topic and entry.get("error_code", 0) == 0:
            ids = sorted(int(p.get("partition", p.get("partition_index", -1))) for p in entry["partitions"])
            if ids:
                return ids
    raise LookupError(f"topic '{topic}' does not exist")


async def read_dead_letters(bootstrap: str, topic: str, timeout: float = 30.0) -> list[DeadLetter]:
    """Every record of `topic` from the beginning to its current end, in partition order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=15_000,
    )
    try:
        partitions = await partitions_of(bootstrap, topic)
        await consumer.start()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        letters: list[DeadLetter] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while remaining:
            if loop.time() > deadline:
                raise TimeoutError(f"could not read '{topic}' to its end within {timeout:.0f} s")
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batches.items():
                for r in records:
                    if r.offset < ends[tp]:
                        letters.append(
                            parse(tp.partition, r.offset, r.timestamp, r.key, r.value, tuple(r.headers))
                        )
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return sorted(letters, key=lambda x: (x.partition, x.offset))
    finally:
        await consumer.stop()


async def republish(bootstrap: str, letters: list[DeadLetter]) -> int:
    """Send each letter to its source topic (original key, value, headers); return how many."""
    producer = create_producer(bootstrap)
    try:
        await producer.start()
        futures = []
        for x in letters:
            assert x.source_topic is not None
            futures.append(
                await producer.send(
                    x.source_topic, value=x.value, key=x.key, headers=list(x.original_headers)
                )
            )
        await asyncio.gather(*futures)  # each one acknowledged by all in-sync replicas
        return len(futures)
    finally:
        await producer.stop()


def _settings() -> DeadLetterSettings:
    try:
        return DeadLetterSettings()
    except ValidationError as exc:
        fail(f"invalid USEROPS_* settings: {exc}")


def _selection(
    consumer: str | None,
    reason: str | None,
    error: str | None,
    topic: str | None,
    since: str | None,
    until: str | None,
) -> Selection:
    now = datetime.now(UTC)
    try:
        return Selection(
            consumer=consumer,
            reason=reason,
            error=error,
            topic=topic,
            since=parse_instant(since, now) if since else None,
            until=parse_instant(until, now) if until else None,
        )
    except ValueError as exc:
        fail(str(exc))


def _select(bootstrap: str | None, dlq: str | None, selection: Selection) -> tuple[str, list[DeadLetter]]:
    settings = _settings()
    server = bootstrap or settings.kafka_bootstrap
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the error below says it once
    try:
        letters = asyncio.run(read_dead_letters(server, dlq or settings.deadletter_topic))
    except (KafkaError, LookupError, TimeoutError, OSError) as exc:
        fail(f"cannot read the dead-letter topic from {server}: {exc}")
    return server, [x for x in letters if selection.matches(x)]


CONSUMER = typer.Option(None, "--consumer", help="only this consumer (e.g. segmenter)")
REASON = typer.Option(None, "--reason", help="reason contains this text (case-insensitive)")
ERROR = typer.Option(None, "--error", help="error contains this text (case-insensitive)")
TOPIC = typer.Option(None, "--topic", help="only records from this source topic")
SINCE = typer.Option(None, "--since", help="dead-lettered at or after: ISO-8601 or an age (30m, 2h, 7d)")
UNTIL = typer.Option(None, "--until", help="dead-lettered before: ISO-8601 or an age (30m, 2h, 7d)")
BOOTSTRAP = typer.Option(None, "--bootstrap", help="Kafka bootstrap (default: $USEROPS_KAFKA_BOOTSTRAP)")
DLQ = typer.Option(
    None, "--deadletter-topic", help="default: $USEROPS_DEADLETTER_TOPIC or userops.deadletter.v1"
)


@deadletter.command("list")
def list_cmd(
    consumer: str | None = CONSUMER,
    reason: str | None = REASON,
    error: str | None = ERROR,
    topic: str | None = TOPIC,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line instead of a table"),
    bootstrap: str | None = BOOTSTRAP,
    dlq: str | None = DLQ,
) -> None:
    """Show dead letters: source topic/partition/offset, consumer, reason, error, when, key.

    Example: userops deadletter list --consumer segmenter --error "index row size" --since 2h
    """
    selection = _selection(consumer, reason, error, topic, since, until)
    _, letters = _select(bootstrap, dlq, selection)
    if as_json:
        for x in letters:
            typer.echo(orjson.dumps(_as_dict(x)).decode())
        return
    for row in table(letters):
        typer.echo(row)
    typer.echo(f"{len(letters)} dead letter(s)", err=True)


@deadletter.command("replay")
def replay_cmd(
    consumer: str | None = CONSUMER,
    reason: str | None = REASON,
    error: str | None = ERROR,
    topic: str | None = TOPIC,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be replayed; send nothing"),
    bootstrap: str | None = BOOTSTRAP,
    dlq: str | None = DLQ,
) -> None:
    """Republish the selected dead letters to their source topics (original key and headers).

    Fix the cause first (deploy the fix); the consumer then applies the replayed records.
    Example: userops deadletter replay --consumer segmenter --since 2026-01-05T10:00:00Z --dry-run
    """
    selection = _selection(consumer, reason, error, topic, since, until)
    server, letters = _select(bootstrap, dlq, selection)
    replayable = [x for x in letters if x.source_topic]
    skipped = len(letters) - len(replayable)
    if skipped:
        typer.secho(f"skipping {skipped} dead letter(s) without a source topic header", err=True)
    if dry_run:
        for row in table(replayable):
            typer.echo(row)
        typer.echo(f"would replay {len(replayable)} dead letter(s) (dry run)")
        return
    try:
        sent = asyncio.run(republish(server, replayable))
    except (KafkaError, OSError) as exc:
        fail(f"replay failed (some records may have been sent; replaying again is safe): {exc}")
    by_topic = sorted({x.source_topic or "" for x in replayable})
    typer.echo(f"replayed {sent} dead letter(s) to {', '.join(by_topic) or 'no topic'}")


def _as_dict(x: DeadLetter) -> dict[str, object]:
    return {
        "deadletter_partition": x.partition,
        "deadletter_offset": x.offset,
        "source_topic": x.source_topic,
        "source_partition": x.source_partition,
        "source_offset": x.source_offset,
        "consumer": x.consumer,
        "reason": x.reason,
        "error": x.error,
        "dead_lettered_at": x.dead_lettered_at.isoformat(),
        "key": None if x.key is None else x.key.decode(errors="replace"),
    }
