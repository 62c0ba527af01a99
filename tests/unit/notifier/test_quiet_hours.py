"""Quiet hours in the user's timezone, across the spring-forward and fall-back nights of New York
and Berlin, including a window end that does not exist on the spring-forward day."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notifier.domain.quiet_hours import QuietWindow, is_quiet, next_allowed, zone

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
NIGHT = QuietWindow(time(21), time(8))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tz", "window", "now", "expected", "why"),
    [
        (NY, NIGHT, utc(2024, 3, 5, 15), utc(2024, 3, 5, 15), "10:00 EST is not quiet"),
        (NY, NIGHT, utc(2024, 3, 6, 3), utc(2024, 3, 6, 13), "22:00 EST -> 08:00 EST"),
        (NY, NIGHT, utc(2024, 3, 6, 10), utc(2024, 3, 6, 13), "05:00 EST -> 08:00 EST the same day"),
        # spring forward, New York: Sun 10 Mar 2024 02:00 EST -> 03:00 EDT (07:00 UTC)
        (NY, NIGHT, utc(2024, 3, 10, 4), utc(2024, 3, 10, 12), "23:00 EST -> 08:00 EDT, one hour less"),
        (
            NY,
            QuietWindow(time(22), time(2, 30)),
            utc(2024, 3, 10, 4, 30),
            utc(2024, 3, 10, 7),
            "02:30 missing",
        ),
        (
            NY,
            QuietWindow(time(2, 15), time(6)),
            utc(2024, 3, 10, 7),
            utc(2024, 3, 10, 10),
            "03:00 EDT is quiet",
        ),
        (
            NY,
            QuietWindow(time(2, 15), time(6)),
            utc(2024, 3, 10, 6, 59),
            utc(2024, 3, 10, 6, 59),
            "01:59 EST",
        ),
        # fall back, New York: Sun 3 Nov 2024 02:00 EDT -> 01:00 EST (06:00 UTC)
        (NY, NIGHT, utc(2024, 11, 3, 2), utc(2024, 11, 3, 13), "22:00 EDT -> 08:00 EST, one hour more"),
        (NY, QuietWindow(time(0), time(1, 30)), utc(2024, 11, 3, 5), utc(2024, 11, 3, 5, 30), "first 01:30"),
        (
            NY,
            QuietWindow(time(0), time(1, 30)),
            utc(2024, 11, 3, 6, 10),
            utc(2024, 11, 3, 6, 30),
            "01:10 EST",
        ),
        # spring forward, Berlin: Sun 31 Mar 2024 02:00 CET -> 03:00 CEST (01:00 UTC)
        (BERLIN, NIGHT, utc(2024, 3, 30, 21), utc(2024, 3, 31, 6), "22:00 CET -> 08:00 CEST"),
        (
            BERLIN,
            QuietWindow(time(23), time(2, 30)),
            utc(2024, 3, 30, 22, 30),
            utc(2024, 3, 31, 1),
            "02:30 missing",
        ),
        # fall back, Berlin: Sun 27 Oct 2024 03:00 CEST -> 02:00 CET (01:00 UTC)
        (BERLIN, NIGHT, utc(2024, 10, 26, 20), utc(2024, 10, 27, 7), "22:00 CEST -> 08:00 CET"),
        (
            BERLIN,
            QuietWindow(time(22), time(2, 30)),
            utc(2024, 10, 26, 21),
            utc(2024, 10, 27, 0, 30),
            "first 02:30",
        ),
        (
            BERLIN,
            QuietWindow(time(22), time(2, 30)),
            utc(2024, 10, 27, 1, 10),
            utc(2024, 10, 27, 1, 30),
            "02:10 CET",
        ),
        (NY, QuietWindow(time(12), time(14)), utc(2024, 3, 5, 17, 30), utc(2024, 3, 5, 19), "lunch window"),
    ],
)
def test_next_allowed(tz: ZoneInfo, window: QuietWindow, now: datetime, expected: datetime, why: str) -> None:
    result = next_allowed(now, tz, window)
    assert result == expected, why
    assert not is_quiet(result, tz, window)


def test_no_window_means_now() -> None:
    now = utc(2024, 3, 6, 3)
    assert next_allowed(now, NY, None) == now


def test_unknown_timezone_falls_back_to_the_default_then_utc() -> None:
    assert zone("Mars/Olympus", "Europe/Berlin") == BERLIN
    assert zone(None, "America/New_York") == NY
    assert zone("nope", "") == UTC


def test_window_needs_distinct_naive_times() -> None:
    with pytest.raises(ValueError, match="start != end"):
        QuietWindow(time(8), time(8))
    with pytest.raises(ValueError, match="without a timezone"):
        QuietWindow(time(21, tzinfo=UTC), time(8))


ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "Asia/Kolkata",
    "Pacific/Chatham",
    "UTC",
]
minutes = st.integers(min_value=0, max_value=24 * 60 - 1).map(lambda m: time(m // 60, m % 60))
instants = st.datetimes(
    min_value=datetime(2023, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=400, deadline=None)
@given(zone_name=st.sampled_from(ZONES), start=minutes, end=minutes, now=instants)
def test_result_is_the_first_instant_outside_the_window(
    zone_name: str, start: time, end: time, now: datetime
) -> None:
    if start == end:
        return
    tz = ZoneInfo(zone_name)
    window = QuietWindow(start, end)
    result = next_allowed(now, tz, window)
    assert result >= now
    assert not is_quiet(result, tz, window)
    if result > now:  # the earliest such instant: just before it, it was still quiet
        assert is_quiet(result - timedelta(microseconds=1), tz, window)
        assert is_quiet(now, tz, window)
    assert result - now <= timedelta(hours=25)


@settings(max_examples=100, deadline=None)
@given(zone_name=st.sampled_from(["America/New_York", "Europe/Berlin"]), start=minutes, end=minutes)
def test_transition_nights_never_end_in_the_window(zone_name: str, start: time, end: time) -> None:
    if start == end:
        return
    tz = ZoneInfo(zone_name)
    window = QuietWindow(start, end)
    nights = {
        "America/New_York": [utc(2024, 3, 10, 0), utc(2024, 11, 3, 0)],
        "Europe/Berlin": [utc(2024, 3, 30, 18), utc(2024, 10, 26, 18)],
    }[zone_name]
    for night in nights:
        for step in range(0, 16 * 60, 7):
            now = night + timedelta(minutes=step)
            result = next_allowed(now, tz, window)
            assert result >= now and not is_quiet(result, tz, window)
            assert result == now or is_quiet(result - timedelta(microseconds=1), tz, window)
