"""Analytics served from the segmenter's store: activity, retention cohorts, lifecycle counts, NPS.

All figures derive from `activity_days` (one row per user per active UTC day), `profiles`,
`stage_history` and `nps_responses`; each query is one SQL statement, so the numbers are consistent snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared import nps as shared_nps

Interval = Literal["day", "week"]


@dataclass(frozen=True)
class ActiveUsers:
    day: date
    dau: int
    wau: int
    mau: int

    @property
    def stickiness(self) -> float:
        """DAU / MAU."""
        return round(self.dau / self.mau, 4) if self.mau else 0.0


async def active_users(conn: AsyncConnection, day: date) -> ActiveUsers:
    row = (
        await conn.execute(
            text(
                """
                SELECT count(DISTINCT user_id) FILTER (WHERE day = :d)            AS dau,
                       count(DISTINCT user_id) FILTER (WHERE day > CAST(:d AS date) - 7)        AS wau,
                       count(DISTINCT user_id)                                    AS mau
                FROM activity_days WHERE day > CAST(:d AS date) - 30 AND day <= :d
                """
            ),
            {"d": day},
        )
    ).one()
    return ActiveUsers(day=day, dau=row.dau, wau=row.wau, mau=row.mau)


def _trunc(interval: Interval, d: date) -> date:
    return d - timedelta(days=d.weekday()) if interval == "week" else d


def _step(interval: Interval) -> int:
    return 7 if interval == "week" else 1


@dataclass(frozen=True)
class Cohort:
    start: date
    size: int
    retained: list[int]  # retained[k]: users of the cohort active in period k (k = 0 is the cohort itself)

    @property
    def rates(self) -> list[float]:
        return [round(n / self.size, 4) if self.size else 0.0 for n in self.retained]


async def retention(conn: AsyncConnection, interval: Interval, periods: int, today: date) -> list[Cohort]:
    """Cohorts by first active period over the last `periods` periods, with period-k retention."""
    step = _step(interval)
    start = _trunc(interval, today) - timedelta(days=step * (periods - 1))
    rows = (
        await conn.execute(
            text(
                """
                WITH firsts AS (
                    SELECT user_id, min(day) AS first_day FROM activity_days GROUP BY user_id
                    HAVING min(day) >= CAST(:start AS date)
                ), periods AS (
                    SELECT DISTINCT a.user_id,
                           (f.first_day - CAST(:start AS date)) / CAST(:step AS int) AS cohort,
                           (a.day - CAST(:start AS date)) / CAST(:step AS int) - (f.first_day - CAST(:start AS date)) / CAST(:step AS int) AS k
                    FROM activity_days a JOIN firsts f USING (user_id)
                    WHERE a.day >= CAST(:start AS date)
                )
                SELECT cohort, k, count(*) AS n FROM periods GROUP BY cohort, k ORDER BY cohort, k
                """
                if interval == "day"
                else """
                WITH firsts AS (
                    SELECT user_id, min(day) AS first_day FROM activity_days GROUP BY user_id
                    HAVING min(day) >= CAST(:start AS date)
                ), periods AS (
                    SELECT DISTINCT a.user_id,
                           (date_trunc('week', f.first_day)::date - CAST(:start AS date)) / CAST(:step AS int) AS cohort,
                           (date_trunc('week', a.day)::date - date_trunc('week', f.first_day)::date) / CAST(:step AS int) AS k
                    FROM activity_days a JOIN firsts f USING (user_id)
                    WHERE a.day >= CAST(:start AS date)
                )
                SELECT cohort, k, count(*) AS n FROM periods GROUP BY cohort, k ORDER BY cohort, k
                """
            ),
            {"start": start, "step": step},
        )
    ).all()
    table: dict[int, dict[int, int]] = {}
    for r in rows:
        table.setdefault(r.cohort, {})[r.k] = r.n
    cohorts = []
    for c in range(periods):
        counts = table.get(c, {})
        horizon = periods - c
        cohorts.append(
            Cohort(
                start=start + timedelta(days=step * c),
                size=counts.get(0, 0),
                retained=[counts.get(k, 0) for k in range(horizon)],
            )
        )
    return cohorts


@dataclass(frozen=True)
class LifecycleCounts:
    """PostHog-style lifecycle of one period: `dormant` counts users lost since the previous period."""

    start: date
    new: int
    returning: int
    resurrecting: int
    dormant: int


async def lifecycle(
    conn: AsyncConnection, interval: Interval, periods: int, today: date
) -> list[LifecycleCounts]:
    step = _step(interval)
    first = _trunc(interval, today) - timedelta(days=step * (periods - 1))
    bucket = "a.day" if interval == "day" else "date_trunc('week', a.day)::date"
    first_bucket = "f.first_day" if interval == "day" else "date_trunc('week', f.first_day)::date"
    rows = (
        await conn.execute(
            text(
                f"""
                WITH ub AS (
                    SELECT DISTINCT a.user_id, {bucket} AS b FROM activity_days a
                    WHERE a.day >= CAST(:first AS date) - CAST(:step AS int)
                ), f AS (
                    SELECT a.user_id, min(a.day) AS first_day FROM activity_days a
                    WHERE a.user_id IN (SELECT user_id FROM ub) GROUP BY a.user_id
                ), cur AS (
                    SELECT ub.b,
                      count(*) FILTER (WHERE {first_bucket} = ub.b)                         AS n_new,
                      count(*) FILTER (WHERE prev.user_id IS NOT NULL)                      AS n_returning,
                      count(*) FILTER (WHERE prev.user_id IS NULL AND {first_bucket} < ub.b) AS n_resurrecting
                    FROM ub JOIN f USING (user_id)
                    LEFT JOIN ub prev ON prev.user_id = ub.user_id AND prev.b = ub.b - CAST(:step AS int)
                    WHERE ub.b >= CAST(:first AS date)
                    GROUP BY ub.b
                ), gone AS (
                    SELECT prev.b + CAST(:step AS int) AS b, count(*) AS n_dormant FROM ub prev
                    LEFT JOIN ub nxt ON nxt.user_id = prev.user_id AND nxt.b = prev.b + CAST(:step AS int)
                    WHERE nxt.user_id IS NULL AND prev.b + CAST(:step AS int) >= CAST(:first AS date)
                    GROUP BY prev.b
                )
                SELECT b, n_new, n_returning, n_resurrecting, 0 AS n_dormant FROM cur
                UNION ALL SELECT b, 0, 0, 0, n_dormant FROM gone
                """
            ),
            {"first": first, "step": step},
        )
    ).all()
    acc: dict[date, list[int]] = {first + timedelta(days=step * i): [0, 0, 0, 0] for i in range(periods)}
    for r in rows:
        if r.b in acc:
            slot = acc[r.b]
            slot[0] += r.n_new
            slot[1] += r.n_returning
            slot[2] += r.n_resurrecting
            slot[3] += r.n_dormant
    return [LifecycleCounts(b, *v) for b, v in sorted(acc.items())]


async def stage_counts(conn: AsyncConnection) -> dict[str, int]:
    """Users per stage (profiles not merged into another), from the `stage_counts` deltas."""
    rows = await conn.execute(
        text("SELECT stage, sum(n) AS n FROM stage_counts GROUP BY stage HAVING sum(n) <> 0")
    )
    return {r.stage: int(r.n) for r in rows}


async def fold_stage_counts(conn: AsyncConnection) -> None:
    """Replace the `stage_counts` deltas by one row per stage (same sums), in one statement.

    Rows a concurrent writer has not committed yet are invisible to it and stay; two folds at
    once each fold the rows they deleted, so every sum is kept.
    """
    await conn.execute(
        text(
            "WITH gone AS (DELETE FROM stage_counts RETURNING stage, n) "
            "INSERT INTO stage_counts (stage, n) SELECT stage, sum(n) FROM gone GROUP BY stage"
        )
    )


async def segment_counts(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(text("SELECT segment, count(*) AS n FROM segment_members GROUP BY segment"))
    return {r.segment: r.n for r in rows}


@dataclass(frozen=True)
class Transition:
    from_stage: str | None
    to_stage: str
    count: int
    rate: float  # share of all moves out of `from_stage` in the window


async def transitions(conn: AsyncConnection, since: datetime) -> list[Transition]:
    rows = (
        await conn.execute(
            text(
                """
                SELECT from_stage, to_stage, count(*) AS n,
                       sum(count(*)) OVER (PARTITION BY from_stage) AS out_of
                FROM stage_history WHERE at >= :since
                GROUP BY from_stage, to_stage ORDER BY from_stage NULLS FIRST, to_stage
                """
            ),
            {"since": since},
        )
    ).all()
    return [Transition(r.from_stage, r.to_stage, r.n, round(r.n / r.out_of, 4)) for r in rows]


@dataclass(frozen=True)
class NpsWeek:
    """One ISO week's NPS answers: each user's latest answer of the week counts once."""

    start: date
    responses: int
    promoters: int
    passives: int
    detractors: int

    @property
    def nps(self) -> float | None:
        """%promoters - %detractors, rounded to 1 decimal; None without responses."""
        value = shared_nps.nps(self.promoters, self.detractors, self.responses)
        return None if value is None else round(value, 1)


async def nps_weekly(conn: AsyncConnection, weeks: int, today: date) -> list[NpsWeek]:
    """NPS per ISO week (Monday 00:00 UTC), the `weeks` weeks up to the one holding `today`,
    oldest first (weeks without answers included, with zero counts).

    A user answering several times in one week counts once, with their latest answer of that
    week (by event time; a tie goes to the higher event id), so one user cannot weigh more than
    another in a week's score. Categories follow `shared.nps` (9-10 promoter, 7-8 passive, 0-6
    detractor).
    """
    first = today - timedelta(days=today.weekday() + 7 * (weeks - 1))
    rows = (
        await conn.execute(
            text(
                """
                WITH latest AS (
                    SELECT DISTINCT ON (user_id, wk) user_id, wk, score FROM (
                        SELECT user_id, score, at, event_id,
                               date_trunc('week', at AT TIME ZONE 'UTC')::date AS wk
                        FROM nps_responses
                        WHERE at >= CAST(:first AS date) AT TIME ZONE 'UTC'
                    ) r
                    ORDER BY user_id, wk, at DESC, event_id DESC
                )
                SELECT wk, count(*) AS n,
                       count(*) FILTER (WHERE score >= 9)              AS promoters,
                       count(*) FILTER (WHERE score BETWEEN 7 AND 8)   AS passives,
                       count(*) FILTER (WHERE score <= 6)              AS detractors
                FROM latest GROUP BY wk
                """
            ),
            {"first": first},
        )
    ).all()
    found = {r.wk: r for r in rows}
    out = []
    for i in range(weeks):
        start = first + timedelta(days=7 * i)
        r = found.get(start)
        out.append(
            NpsWeek(start, 0, 0, 0, 0)
            if r is None
            else NpsWeek(start, r.n, r.promoters, r.passives, r.detractors)
        )
    return out
