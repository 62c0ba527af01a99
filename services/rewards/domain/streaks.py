"""Daily check-in streaks counted in the user's own timezone.

A check-in's day is its local calendar date (`zoneinfo`), so DST changes never split or merge
days: a day of 23 or 25 hours is still one date. At most one check-in per local date counts; a
check-in on a date at or before the streak's last date (a second one that day, a late event, or
a move to a timezone behind) changes nothing. A check-in the day after the last extends the
streak; after missed days, the streak is kept if its remaining freeze allowance covers them
(each missed day uses one freeze), otherwise a new streak starts at 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from services.rewards.domain.state import StreakState


@dataclass(frozen=True, slots=True)
class CheckIn:
    """A counted check-in: the streak's new `length`, its `local_date`, freezes used so far."""

    length: int
    local_date: date
    freezes_used: int


def local_date(at: datetime, zone: ZoneInfo) -> date:
    """The calendar date of instant `at` (aware) in `zone`."""
    return at.astimezone(zone).date()


def check_in(streak: StreakState, day: date, freezes: int) -> CheckIn | None:
    """Count a check-in on local date `day`; mutates `streak`. None if it does not count."""
    if streak.last_date is not None and day <= streak.last_date:
        return None
    missed = None if streak.last_date is None else (day - streak.last_date).days - 1
    if missed is not None and missed <= freezes - streak.freezes_used:
        streak.length += 1
        streak.freezes_used += missed
    else:
        streak.length = 1
        streak.freezes_used = 0
    streak.last_date = day
    streak.longest = max(streak.longest, streak.length)
    return CheckIn(streak.length, day, streak.freezes_used)
