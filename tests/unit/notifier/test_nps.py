"""NPS answers: categories, tolerant parsing, and the weekly score."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.notifier.domain.nps import NpsAnswer, category, parse_comment, parse_score, weekly

MONDAY = datetime(2024, 3, 4, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("score", "expected"),
    [(0, "detractor"), (6, "detractor"), (7, "passive"), (8, "passive"), (9, "promoter"), (10, "promoter")],
)
def test_categories(score: int, expected: str) -> None:
    assert category(score) == expected


@pytest.mark.parametrize("score", [-1, 11, True, 7.5])
def test_category_refuses_non_scores(score: object) -> None:
    with pytest.raises(ValueError, match="integer 0-10"):
        category(score)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (7, 7),
        (7.0, 7),
        ("10", 10),
        (" 3 ", 3),
        (7.5, None),
        (11, None),
        (-1, None),
        (True, None),
        ("x", None),
        (None, None),
    ],
)
def test_parse_score(raw: object, expected: int | None) -> None:
    assert parse_score(raw) == expected


def test_parse_comment() -> None:
    assert parse_comment("slow app") == "slow app"
    assert parse_comment(None) == ""
    assert len(parse_comment("x" * 5000)) == 2000


def test_weekly_nps() -> None:
    def answer(day: int, score: int) -> NpsAnswer:
        return NpsAnswer(f"u{day}-{score}", MONDAY + timedelta(days=day), score)

    answers = [answer(0, 10), answer(1, 9), answer(2, 3), answer(6, 8), answer(7, 0), answer(8, 0)]
    first, second = weekly(answers)
    assert first.start == date(2024, 3, 4) and second.start == date(2024, 3, 11)
    assert (first.answers, first.promoters, first.passives, first.detractors) == (4, 2, 1, 1)
    assert first.nps == pytest.approx(25.0)
    assert second.nps == -100.0
    assert weekly([]) == []
