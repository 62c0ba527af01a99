"""Uplift intervals against published values, and their coverage by simulation."""

from __future__ import annotations

import random

import pytest

from services.notifier.domain.assignment import HOLDOUT, assign
from services.notifier.domain.report import campaign_report
from services.notifier.domain.uplift import newcombe_difference, uplift, wilson, z_value


@pytest.mark.parametrize(
    ("x", "n", "low", "high"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I,
        # method 3 (Wilson score, no continuity correction)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0000, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_newcombe_1998a(x: int, n: int, low: float, high: float) -> None:
    interval = wilson(x, n)
    assert (round(interval.low, 4), round(interval.high, 4)) == (low, high)


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "low", "high"),
    [
        # Newcombe (1998), "Interval estimation for the difference between independent
        # proportions: comparison of eleven methods", Table II, method 10 (hybrid score)
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (6, 7, 2, 7, 0.0582, 0.8062),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
        (0, 10, 0, 10, -0.2775, 0.2775),
        (10, 10, 0, 20, 0.6791, 1.0000),
        (10, 10, 0, 10, 0.6075, 1.0000),
    ],
)
def test_difference_matches_newcombe_1998b(
    x1: int, n1: int, x2: int, n2: int, low: float, high: float
) -> None:
    difference, interval = newcombe_difference(x1, n1, x2, n2)
    assert difference == pytest.approx(x1 / n1 - x2 / n2)
    assert (round(interval.low, 4), round(interval.high, 4)) == (low, high)


def test_z_value() -> None:
    assert z_value(0.95) == pytest.approx(1.959964, abs=1e-6)
    with pytest.raises(ValueError, match="confidence"):
        z_value(1.0)


def test_uplift_without_a_group_has_no_interval() -> None:
    result = uplift(10, 100, 0, 0)
    assert result.treatment_rate == 0.1 and result.holdout_rate is None
    assert result.difference is None and result.interval is None and not result.significant
    with pytest.raises(ValueError, match="successes"):
        uplift(11, 10, 0, 5)


def test_a_clear_effect_is_significant() -> None:
    result = uplift(300, 1000, 200, 1000)
    assert result.difference == pytest.approx(0.1)
    assert result.significant


def test_simulated_campaign_interval_covers_the_true_effect() -> None:
    """Users are split by the real assignment (10 % holdout), convert with a known probability per
    group, and the report's interval must contain the true effect in at least 90 of 100 runs."""
    users = [f"user-{i}" for i in range(3000)]
    groups = [assign("winback", u, 0.10, [("a", 0.5), ("b", 0.5)]) for u in users]
    p_holdout, p_treated = 0.20, 0.28
    covered = 0
    for seed in range(100):
        rng = random.Random(seed)
        entries = [(g, rng.random() < (p_holdout if g == HOLDOUT else p_treated)) for g in groups]
        report = campaign_report("winback", [], entries)
        assert report.uplift is not None and report.uplift.interval is not None
        covered += (p_treated - p_holdout) in report.uplift.interval
    assert covered >= 90
