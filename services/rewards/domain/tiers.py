"""Tiers as a pure function of earned history, tier policy and time.

Earned history is append-only: each award adds `EarnedPoints(at, +points)`, each reversal adds
`EarnedPoints(at_reversal, -points)`. Spending, holds and expiry never touch it, so spending
never demotes. The points earned at instant `t` are the sum over (t - window, t], floored at 0;
the level a user qualifies for is the highest whose `min_points` that sum reaches.

- Promotion is immediate: whenever an award lifts the qualified level above the current one, the
  user moves up at that instant and a new period starts (`period_end = at + period`).
- Demotion happens only at a review, `period_end + grace`: if the user then qualifies for less,
  they drop to what they qualify for; otherwise the tier is kept. Either way the next period ends
  one `period` after the last. The base level (index 0) has no period and is never reviewed.

`tier_at(history, cfg, t)` computes the status from scratch; `catch_up` and `on_earned` are the
incremental steps `decide` uses, and give the same status for the same history and time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from services.rewards.config import TiersConfig
from services.rewards.domain.state import EarnedPoints, TierStatus


@dataclass(frozen=True, slots=True)
class TierMove:
    """A tier change: level indexes `from_level` → `to_level` at `at`, `reason` promoted/demoted,
    with the points `earned` in the window then and the new `period_end`."""

    from_level: int
    to_level: int
    at: datetime
    reason: str
    earned: int
    period_end: datetime | None


def earned_in_window(history: Iterable[EarnedPoints], at: datetime, cfg: TiersConfig) -> int:
    """Points earned in (at - window, at], never below zero."""
    start = at - cfg.window
    return max(0, sum(e.points for e in history if start < e.at <= at))


def level_for(points: int, cfg: TiersConfig) -> int:
    """The highest level whose `min_points` `points` reaches."""
    level = 0
    for i, tier in enumerate(cfg.levels):
        if points >= tier.min_points:
            level = i
    return level


def next_review(status: TierStatus, cfg: TiersConfig) -> datetime | None:
    """When the current tier is next reviewed (None: never, at the base level)."""
    return None if status.period_end is None else status.period_end + cfg.grace


def catch_up(
    status: TierStatus, history: list[EarnedPoints], until: datetime, cfg: TiersConfig
) -> list[TierMove]:
    """Apply every review due at or before `until`, each at its own instant; mutates `status`."""
    moves: list[TierMove] = []
    review = next_review(status, cfg)
    while review is not None and review <= until and status.period_end is not None:
        points = earned_in_window(history, review, cfg)
        qualified, before = level_for(points, cfg), status.level
        status.level = qualified
        status.period_end = None if qualified == 0 else status.period_end + cfg.period
        if qualified != before:
            reason = "promoted" if qualified > before else "demoted"
            moves.append(TierMove(before, qualified, review, reason, points, status.period_end))
        review = next_review(status, cfg)
    return moves


def on_earned(
    status: TierStatus, history: list[EarnedPoints], at: datetime, cfg: TiersConfig
) -> TierMove | None:
    """Promote at once if the history (including what was just earned at `at`) qualifies for a
    higher level; mutates `status`."""
    points = earned_in_window(history, at, cfg)
    qualified = level_for(points, cfg)
    if qualified <= status.level:
        return None
    move = TierMove(status.level, qualified, at, "promoted", points, at + cfg.period)
    status.level = qualified
    status.period_end = move.period_end
    return move


def tier_at(
    history: Iterable[EarnedPoints], cfg: TiersConfig, t: datetime
) -> tuple[TierStatus, list[TierMove]]:
    """The tier status at `t` from the whole earned history, and every move up to `t`."""
    entries = sorted((e for e in history if e.at <= t), key=lambda e: e.at)
    status = TierStatus()
    moves: list[TierMove] = []
    seen: list[EarnedPoints] = []
    for entry in entries:
        moves += catch_up(status, seen, entry.at, cfg)
        seen.append(entry)
        if entry.points > 0:
            move = on_earned(status, seen, entry.at, cfg)
            if move is not None:
                moves.append(move)
    moves += catch_up(status, seen, t, cfg)
    return status, moves


def prune(history: list[EarnedPoints], now: datetime, cfg: TiersConfig) -> list[EarnedPoints]:
    """Drop entries no window at or after `now` can contain."""
    start = now - cfg.window
    return [e for e in history if e.at > start]
