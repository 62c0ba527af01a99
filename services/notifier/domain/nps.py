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
from datetime import date, datetime
from typing import Any, Final

from shared.nps import CATEGORIES, Category, category, nps, parse_score, week_start

__all__ = [
    "CATEGORIES",
    "MAX_COMMENT",
    "Category",
    "NpsAnswer",
    "NpsSummary",
    "category",
    "parse_comment",
    "parse_score",
    "summarize",
    "week_start",
    "weekly",
]

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
        return nps(self.promoters, self.detractors, self.answers)


def summarize(answers: Iterable[NpsAnswer], start: date) -> NpsSummary:
    """The counts and NPS of `answers` (labelled with the period's `start`)."""
    counts = dict.fromkeys(CATEGORIES, 0)
    for answer in answers:
        counts[answer.category] += 1
    return NpsSummary(start, sum(counts.values()), counts["promoter"], counts["passive"], counts["detractor"])


def weekly(answers: Iterable[NpsAnswer]) -> list[NpsSummary]:
    """NPS per ISO week (UTC), oldest first; weeks without answers are left out."""
    by_week: dict[date, list[NpsAnswer]] = {}
    for answer in answers:
        by_week.setdefault(week_start(answer.at), []).append(answer)
    return [summarize(by_week[start], start) for start in sorted(by_week)]
