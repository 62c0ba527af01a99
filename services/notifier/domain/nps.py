"""Net Promoter Score: categories of one answer and the score of a set of answers.

An answer is an `NPS Submitted` track event with an integer `score` 0-10 and an optional
`comment` (property names are configurable). 9-10 is a promoter, 7-8 passive, 0-6 a detractor.
NPS = 100 x (promoters - detractors) / answers, in [-100, 100]. Weeks are ISO weeks (Monday
00:00 UTC to the next Monday); every answer counts (a user answering twice in one week counts
twice, as survey tools report raw responses).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal

Category = Literal["detractor", "passive", "promoter"]
CATEGORIES: Final[tuple[Category, ...]] = ("detractor", "passive", "promoter")
MAX_COMMENT: Final = 2000
"""Characters of a comment kept in the projection and templates."""


@dataclass(frozen=True, slots=True)
class NpsAnswer:
    """One answer: who, when, the score 0-10 and the comment (possibly empty)."""

    user_id: str
    at: datetime
    score: int
    comment: str = ""

    @property
    def category(self) -> Category:
        return category(self.score)


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


def parse_comment(value: Any) -> str:
    """The comment as text, cut to `MAX_COMMENT` characters; anything not a string is empty."""
    return value[:MAX_COMMENT] if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class NpsSummary:
    """Counts of one period and its NPS (None when there were no answers)."""

    start: date
    answers: int
    promoters: int
    passives: int
    detractors: int

    @property
    def nps(self) -> float | None:
        if not self.answers:
            return None
        return 100.0 * (self.promoters - self.detractors) / self.answers


def summarize(answers: Iterable[NpsAnswer], start: date) -> NpsSummary:
    """The counts and NPS of `answers` (labelled with the period's `start`)."""
    counts = dict.fromkeys(CATEGORIES, 0)
    for answer in answers:
        counts[answer.category] += 1
    return NpsSummary(start, sum(counts.values()), counts["promoter"], counts["passive"], counts["detractor"])


def week_start(at: datetime) -> date:
    """The Monday (UTC) of the ISO week holding `at`."""
    day = at.astimezone(UTC).date()
    return day - timedelta(days=day.weekday())


def weekly(answers: Iterable[NpsAnswer]) -> list[NpsSummary]:
    """NPS per ISO week (UTC), oldest first; weeks without answers are left out."""
    by_week: dict[date, list[NpsAnswer]] = {}
    for answer in answers:
        by_week.setdefault(week_start(answer.at), []).append(answer)
    return [summarize(by_week[start], start) for start in sorted(by_week)]
