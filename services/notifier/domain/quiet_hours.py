"""Quiet hours in the user's own timezone: when a message may go out (DESIGN.md §6).

A quiet window is a pair of local wall-clock times `[start, end)`; it spans midnight when
`start > end` (e.g. 21:00-08:00). An instant is quiet when the user's local wall time of that
instant falls in the window. `next_allowed(now, tz, window)` is the earliest instant ≥ `now` that
is not quiet, so:

- outside the window the answer is `now` itself;
- inside it, the answer is the first instant whose local time reaches `end` on the day the quiet
  period ends. When that wall time does not exist (a spring-forward gap, e.g. 02:30 in New York
  on the second Sunday of March) the answer is the instant the clocks jump (03:00 local), never
  an hour late; when it occurs twice (fall back) the answer is its first occurrence.

Every datetime passed in or returned is timezone-aware; results are in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MAX_STEPS: Final = 4
"""Quiet periods walked past at most (a window can recur after a fall-back hour)."""


@dataclass(frozen=True, slots=True)
class QuietWindow:
    """Local wall-clock window `[start, end)`; spans midnight when `start > end`."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("quiet hours need start != end")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("quiet hours are wall-clock times without a timezone")

    @property
    def spans_midnight(self) -> bool:
        return self.start > self.end

    def contains(self, wall: time) -> bool:
        """Whether the local wall time `wall` is quiet."""
        if self.spans_midnight:
            return wall >= self.start or wall < self.end
        return self.start <= wall < self.end


def zone(name: str | None, default: str) -> tzinfo:
    """The user's timezone, else the configured default, else UTC (unknown names fall back)."""
    for candidate in (name, default):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return UTC


def is_quiet(at: datetime, tz: tzinfo, window: QuietWindow) -> bool:
    """Whether the instant `at` is inside the quiet window in timezone `tz`."""
    return window.contains(_wall(at, tz).time())


def next_allowed(now: datetime, tz: tzinfo, window: QuietWindow | None) -> datetime:
    """The earliest instant ≥ `now` outside the quiet window (in UTC); `now` if there is none."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    at = now.astimezone(UTC)
    if window is None:
        return at
    for _ in range(_MAX_STEPS):
        local = _wall(at, tz)
        if not window.contains(local.time()):
            return at
        end_day = local.date()
        if window.spans_midnight and local.time() >= window.start:
            end_day += timedelta(days=1)
        candidate = first_instant_at_or_after(end_day, window.end, tz, not_before=at)
        at = max(candidate, at + timedelta(microseconds=1))
    return at


def first_instant_at_or_after(day: date, wall: time, tz: tzinfo, *, not_before: datetime) -> datetime:
    """The earliest instant (UTC), not before `not_before`, at which the local wall time in `tz`
    reads `day` `wall`, or passes it by jumping over it.

    An existing wall time gives its first occurrence not before `not_before` (after a fall-back,
    a wall time occurs twice); one inside a spring-forward gap gives the instant of the jump,
    found by bisection between the two offsets' readings of it.
    """
    naive = datetime.combine(day, wall)
    early = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _wall(early, tz) == naive:
        late = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
        occurrences = sorted({early, late})
        return next((t for t in occurrences if t >= not_before), occurrences[-1])
    lo = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    hi = early
    if lo > hi:
        lo, hi = hi, lo
    if _wall(hi, tz) < naive:  # not a gap reading we understand: step forward minute by minute
        while _wall(hi, tz) < naive:
            hi += timedelta(minutes=1)
        return hi
    # invariant: wall(lo) < naive <= wall(hi); shrink to one microsecond
    while hi - lo > timedelta(microseconds=1):
        mid = lo + (hi - lo) / 2
        if _wall(mid, tz) >= naive:
            hi = mid
        else:
            lo = mid
    return hi


def _wall(at: datetime, tz: tzinfo) -> datetime:
    """The naive local wall-clock reading of the instant `at` in `tz`."""
    return at.astimezone(tz).replace(tzinfo=None, fold=0)
