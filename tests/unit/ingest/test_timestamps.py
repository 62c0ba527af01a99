"""Timestamp formatting and parsing (domain/timestamps.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.domain.errors import InvalidRequest
from services.ingest.domain.timestamps import corrected_timestamp, format_ts, parse_ts
from shared.events import format_ts as shared_format_ts
from shared.events import parse_ts as shared_parse_ts

offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2999, 12, 30), timezones=offsets))
def test_format_matches_the_shared_contract_format(ts: datetime) -> None:
    assert format_ts(ts) == shared_format_ts(ts)
    assert shared_parse_ts(format_ts(ts), "t") == ts.replace(microsecond=ts.microsecond // 1000 * 1000)


def test_format_pads_years_and_milliseconds() -> None:
    assert format_ts(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2024-01-02T03:04:05.000Z"
    assert format_ts(datetime(999, 1, 2, 3, 4, 5, 7000)) == "0999-01-02T03:04:05.007Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00.123z", datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)),
        ("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01 12:00:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
    ],
)
def test_parse_accepts_iso_8601_variants(text: str, expected: datetime) -> None:
    assert parse_ts(text, "timestamp") == expected


@pytest.mark.parametrize("value", ["", "soon", "2024-13-01T00:00:00Z", 1714564800, None])
def test_parse_refuses_non_timestamps_naming_the_field(value: object) -> None:
    with pytest.raises(InvalidRequest, match=r"^batch\[2\]\.sentAt: "):
        parse_ts(value, "batch[2].sentAt")


def test_skew_correction_moves_the_event_by_the_upload_delay() -> None:
    received = datetime(2024, 5, 1, 12, tzinfo=UTC)
    sent = datetime(2024, 5, 1, 9, 0, 30, tzinfo=UTC)  # client clock 3 h slow
    original = datetime(2024, 5, 1, 9, tzinfo=UTC)
    assert corrected_timestamp(received, sent, original) == received - timedelta(seconds=30)
