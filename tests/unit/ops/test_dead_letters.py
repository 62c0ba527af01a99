"""Selecting dead letters and rebuilding the original record (no broker needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scripts.commands.dead_letters import Selection, parse, parse_instant, table
from shared.runtime import deadletter as dl

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def letter_headers(at: str = "2026-03-01T11:00:00+00:00") -> tuple[tuple[str, bytes], ...]:
    return (
        ("traceparent", b"00-aa-01"),
        (dl.SOURCE_TOPIC, b"userops.events.v1"),
        (dl.SOURCE_PARTITION, b"2"),
        (dl.SOURCE_OFFSET, b"41"),
        (dl.CONSUMER, b"segmenter"),
        (dl.REASON, b"permanent"),
        (dl.ERROR, b"PermanentError: revenue is not finite"),
        (dl.DEAD_LETTERED_AT, at.encode()),
        ("content-type", b"application/json"),
    )


def test_a_dead_letter_keeps_the_original_headers_in_order_without_its_own() -> None:
    x = parse(0, 5, 0, b"u1", b"{}", letter_headers())
    assert (x.source_topic, x.source_partition, x.source_offset) == ("userops.events.v1", 2, 41)
    assert x.dead_lettered_at == NOW - timedelta(hours=1)
    assert x.original_headers == (("traceparent", b"00-aa-01"), ("content-type", b"application/json"))


def test_missing_or_broken_headers_fall_back_to_the_record_itself() -> None:
    x = parse(1, 9, 1_700_000_000_000, None, None, ((dl.SOURCE_OFFSET, b"x"), (dl.DEAD_LETTERED_AT, b"soon")))
    assert (x.source_topic, x.source_offset, x.consumer, x.value) == (None, None, "", b"")
    assert x.dead_lettered_at == datetime.fromtimestamp(1_700_000_000, UTC)


def test_every_set_criterion_must_match() -> None:
    x = parse(0, 5, 0, b"u1", b"{}", letter_headers())
    assert Selection().matches(x)
    assert Selection(consumer="segmenter", error="NOT FINITE", topic="userops.events.v1").matches(x)
    assert not Selection(consumer="segmenter", error="decode").matches(x)
    assert not Selection(consumer="rewards").matches(x)
    assert Selection(since=NOW - timedelta(hours=1), until=NOW).matches(x)  # since is inclusive
    assert not Selection(until=NOW - timedelta(hours=1)).matches(x)  # until is exclusive


def test_instants_are_iso_or_ages() -> None:
    assert parse_instant("90m", NOW) == NOW - timedelta(minutes=90)
    assert parse_instant("7d", NOW) == NOW - timedelta(days=7)
    assert parse_instant("2026-03-01T10:00:00", NOW) == NOW - timedelta(hours=2)  # UTC without offset
    assert parse_instant("2026-03-01T10:00:00Z", NOW) == NOW - timedelta(hours=2)
    with pytest.raises(ValueError, match="neither an ISO-8601 instant nor an age"):
        parse_instant("yesterday", NOW)


def test_the_table_shows_where_from_who_why_when_and_the_key() -> None:
    header, row = table([parse(0, 5, 0, b"u1", b"{}", letter_headers())])
    assert header.split() == ["source", "consumer", "reason", "error", "dead_lettered_at", "key"]
    assert row.split("  ")[0] == "userops.events.v1/2/41"
    assert "2026-03-01T11:00:00Z" in row
    assert row.endswith("u1")
