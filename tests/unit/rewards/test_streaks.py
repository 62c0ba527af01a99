"""Streaks: one check-in per local date, in the user's timezone, correct across DST changes,
with an optional freeze allowance; streak badges."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.rewards.domain.outputs import BadgeEarned, PointsAwarded, StreakExtended
from services.rewards.domain.simulate import Replay
from services.rewards.domain.state import StreakState
from services.rewards.domain.streaks import check_in, local_date
from tests.unit.rewards.support import config, example_config, of_type, track

CFG = example_config()


def streak_of(r: Replay) -> list[tuple[int, date]]:
    return [(o.days, o.local_date) for d in r.decisions for o in of_type(d.outputs, StreakExtended)]


def checkins(zone: str, local_times: list[datetime], cfg: object = CFG) -> Replay:
    r = Replay(cfg)  # type: ignore[arg-type]
    r.keep_decisions = True
    for t in local_times:
        r.feed(track("Checked In", t.replace(tzinfo=ZoneInfo(zone)), traits={"timezone": zone}))
    return r


@pytest.mark.parametrize(
    ("zone", "change"),
    [
        ("America/New_York", date(2024, 3, 10)),  # 23-hour day
        ("America/New_York", date(2024, 11, 3)),  # 25-hour day
        ("Europe/Berlin", date(2024, 3, 31)),
        ("Europe/Berlin", date(2024, 10, 27)),
    ],
)
def test_one_check_in_per_local_date_across_dst(zone: str, change: date) -> None:
    before, after = change - timedelta(days=1), change + timedelta(days=1)
    times = [
        datetime.combine(before, datetime.min.time()).replace(hour=23, minute=50),
        datetime.combine(change, datetime.min.time()).replace(hour=0, minute=10),
        datetime.combine(change, datetime.min.time()).replace(hour=23, minute=50),  # same local date
        datetime.combine(after, datetime.min.time()).replace(hour=0, minute=5),
    ]
    r = checkins(zone, times)
    assert streak_of(r) == [(1, before), (2, change), (3, after)]


def test_the_local_date_is_not_the_utc_date() -> None:
    # 20:00 and 21:00 New York time on consecutive local days; in UTC both are past midnight.
    r = checkins("America/New_York", [datetime(2024, 1, 1, 20), datetime(2024, 1, 2, 21)])
    assert streak_of(r) == [(1, date(2024, 1, 1)), (2, date(2024, 1, 2))]


def test_freezes_bridge_missed_days_up_to_the_allowance() -> None:
    cfg = config(streak={"event": "Checked In", "freezes": 1})
    days = [1, 3, 4, 6]
    r = checkins("UTC", [datetime(2024, 5, d, 12) for d in days], cfg)
    assert [length for length, _ in streak_of(r)] == [1, 2, 3, 1]  # the second gap breaks it


def test_a_seven_day_streak_earns_the_badge_and_70_points() -> None:
    r = checkins("Europe/Berlin", [datetime(2024, 3, 25, 8) + timedelta(days=i) for i in range(14)])
    badges = [o for d in r.decisions for o in of_type(d.outputs, BadgeEarned)]
    assert [(b.badge, b.times, b.points) for b in badges] == [
        ("week_streak", 1, 70),
        ("week_streak", 2, 70),
    ]
    awarded = [o for d in r.decisions for o in of_type(d.outputs, PointsAwarded)]
    assert [a.points for a in awarded] == [70, 70]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 60 * 24 * 60), max_size=40),
    st.sampled_from(["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "UTC"]),
    st.integers(0, 3),
)
def test_streak_counts_each_local_date_once(minutes: list[int], zone: str, freezes: int) -> None:
    tz = ZoneInfo(zone)
    start = datetime(2024, 2, 20, tzinfo=UTC)
    streak = StreakState()
    counted = []
    for m in sorted(minutes):
        got = check_in(streak, local_date(start + timedelta(minutes=m), tz), freezes)
        if got is not None:
            counted.append(got)
    dates = sorted({local_date(start + timedelta(minutes=m), tz) for m in minutes})
    assert [c.local_date for c in counted] == dates
    for prev, cur in itertools.pairwise(counted):
        gap = (cur.local_date - prev.local_date).days - 1
        if cur.length == prev.length + 1:
            assert cur.freezes_used == prev.freezes_used + gap <= freezes
        else:
            assert cur.length == 1 and cur.freezes_used == 0
    assert all(c.length <= i + 1 for i, c in enumerate(counted))
