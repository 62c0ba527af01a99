"""Uplift of a campaign: the goal rate in treatment versus holdout, with a 95 % interval.

The difference `p_t - p_h` of two independent proportions gets Newcombe's hybrid score interval
(Newcombe 1998, "Interval estimation for the difference between independent proportions:
comparison of eleven methods", Statistics in Medicine 17:873-890, method 10), built from the two
Wilson score intervals. It was chosen over the Wald interval because it keeps close to its nominal
coverage with small groups and rates near 0 or 1, which holdouts of 10 % routinely produce, and it
never leaves [-1, 1]. The unit tests reproduce the published worked examples of both papers
(Newcombe 1998a for Wilson, 1998b for the difference).

Stdlib only: the normal quantile comes from `statistics.NormalDist`.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import sqrt
from statistics import NormalDist


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


def z_value(confidence: float) -> float:
    """The two-sided standard normal quantile, e.g. 1.959964 for 0.95."""
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson's score interval for one proportion (no continuity correction); [0, 1] when n = 0."""
    _check(successes, n)
    if n == 0:
        return Interval(0.0, 1.0)
    z = z_value(confidence)
    p = successes / n
    centre = 2 * n * p + z * z
    spread = z * sqrt(z * z + 4 * n * p * (1 - p))
    denominator = 2 * (n + z * z)
    low = 0.0 if successes == 0 else (centre - spread) / denominator
    high = 1.0 if successes == n else (centre + spread) / denominator
    return Interval(low, high)


def newcombe_difference(
    x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95
) -> tuple[float, Interval]:
    """The difference `x1/n1 - x2/n2` and Newcombe's hybrid score interval for it.

    Both groups must be non-empty.
    """
    _check(x1, n1)
    _check(x2, n2)
    if n1 == 0 or n2 == 0:
        raise ValueError("both groups need at least one member")
    p1, p2 = x1 / n1, x2 / n2
    a = wilson(x1, n1, confidence)
    b = wilson(x2, n2, confidence)
    d = p1 - p2
    low = d - sqrt((p1 - a.low) ** 2 + (b.high - p2) ** 2)
    high = d + sqrt((a.high - p1) ** 2 + (p2 - b.low) ** 2)
    return d, Interval(max(-1.0, low), min(1.0, high))


@dataclass(frozen=True, slots=True)
class Uplift:
    """Goal rates of treatment and holdout, their difference and its interval.

    `difference` and `interval` are None while either group is empty.
    """

    treatment_n: int
    treatment_goals: int
    holdout_n: int
    holdout_goals: int
    treatment_rate: float | None
    holdout_rate: float | None
    difference: float | None
    interval: Interval | None
    confidence: float

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero."""
        return self.interval is not None and 0.0 not in self.interval


def uplift(
    treatment_goals: int, treatment_n: int, holdout_goals: int, holdout_n: int, confidence: float = 0.95
) -> Uplift:
    """The uplift of a campaign from its goal counts per group."""
    _check(treatment_goals, treatment_n)
    _check(holdout_goals, holdout_n)
    difference: float | None = None
    interval: Interval | None = None
    if treatment_n and holdout_n:
        difference, interval = newcombe_difference(
            treatment_goals, treatment_n, holdout_goals, holdout_n, confidence
        )
    return Uplift(
        treatment_n=treatment_n,
        treatment_goals=treatment_goals,
        holdout_n=holdout_n,
        holdout_goals=holdout_goals,
        treatment_rate=treatment_goals / treatment_n if treatment_n else None,
        holdout_rate=holdout_goals / holdout_n if holdout_n else None,
        difference=difference,
        interval=interval,
        confidence=confidence,
    )


def _check(successes: int, n: int) -> None:
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
