"""Net Promoter Score rules shared by the services that read NPS answers (pure functions).

An answer's score is an integer 0-10: 9-10 is a promoter, 7-8 passive, 0-6 a detractor.
NPS = 100 x (promoters - detractors) / answers, in [-100, 100]. Weeks are ISO weeks (Monday
00:00 UTC to the next Monday).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal

Category = Literal["detractor", "passive", "promoter"]
CATEGORIES: Final[tuple[Category, ...]] = ("detractor", "passive", "promoter")


def category(score: int) -> Category:
    """promoter (9-10), passive (7-8) or detractor (0-6); ValueError outside 0-10."""
    if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 10:
        raise ValueError(f"an NPS score is an integer 0-10, got {score!r}")
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def parse_score(value: Any) -> int | None:
    """The score of an answer's property: an integer 0-10 (also `7.0` or `"7"`); None otherwise,
    so a malformed answer is ignored rather than failing the consumer."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit():
            return None
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= 10:
        return value
    return None


def nps(promoters: int, detractors: int, answers: int) -> float | None:
    """100 x (promoters - detractors) / answers; None when there were no answers."""
    if not answers:
        return None
    return 100.0 * (promoters - detractors) / answers


def week_start(at: datetime) -> date:
    """The Monday (UTC) of the ISO week holding `at`."""
    day = at.astimezone(UTC).date()
    return day - timedelta(days=day.weekday())
