"""Series the report needs, derived from what the segmenter's analytics API serves.

The segmenter serves the stage populations of now (`/v1/stages`) and the stage changes since an
instant (`/v1/analytics/transitions?days=`). Every change is one history row, so the population
of a stage `d` days ago is today's, less the users who moved into it since, plus those who moved
out of it since. The same changes over the funnel's window give the activation funnel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from scripts.report.data import Funnel, FunnelStep, StagePoint


@dataclass(frozen=True)
class Transition:
    """`count` users moved from `from_stage` (None: a first stage) to `to_stage` in a window."""

    from_stage: str | None
    to_stage: str
    count: int


def stages_at(current: dict[str, int], since: Iterable[Transition]) -> dict[str, int]:
    """The stage populations at the start of a window, from today's and the window's changes.

    A count never goes below zero: an alias merge moves the anonymous profile's history to
    the user, so a merged user's first stage can be counted twice in a window.
    """
    counts = dict(current)
    for t in since:
        counts[t.to_stage] = counts.get(t.to_stage, 0) - t.count
        if t.from_stage is not None:
            counts[t.from_stage] = counts.get(t.from_stage, 0) + t.count
    return {stage: max(0, n) for stage, n in counts.items()}


def stage_series(
    current: dict[str, int], now: datetime, windows: Sequence[tuple[datetime, Sequence[Transition]]]
) -> list[StagePoint]:
    """Stage populations at each window's start and now, oldest first."""
    points = [StagePoint(at=since, counts=stages_at(current, changes)) for since, changes in windows]
    points.append(StagePoint(at=now, counts=dict(current)))
    return sorted(points, key=lambda p: p.at)


def activation_funnel(days: int, changes: Iterable[Transition]) -> Funnel:
    """The activation funnel from the stage changes of the last `days` days.

    Steps: users seen for the first time (a first stage), users who met the activation
    condition (moved to `activated`), and users still active when their activation week ended
    (moved from `activated` to `active` rather than to `at_risk`). The steps count moves in
    one window, so users who arrived late in it may not have reached the later steps yet.
    """
    first = activated = kept = 0
    for t in changes:
        if t.from_stage is None:
            first += t.count
        if t.to_stage == "activated":
            activated += t.count
        if t.from_stage == "activated" and t.to_stage == "active":
            kept += t.count
    return Funnel(
        days=days,
        steps=[
            FunnelStep("first seen", first),
            FunnelStep("activated", activated),
            FunnelStep("active after the activation week", kept),
        ],
    )
