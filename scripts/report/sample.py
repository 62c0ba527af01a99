"""A deterministic `ReportData` with every section filled: the report's layout without services
(tests, and `userops report --sample` to preview the page)."""

from __future__ import annotations

from datetime import datetime, timedelta

from scripts.report.data import (
    ActiveDay,
    Budget,
    Campaign,
    CohortRow,
    CoreUsers,
    Economy,
    Funnel,
    FunnelStep,
    NpsWeek,
    PointsTotals,
    ReportData,
    StagePoint,
    Uplift,
)

STAGES = ("new", "activated", "active", "reactivated", "at_risk", "dormant", "churned")


def sample_report(now: datetime, weeks: int = 12, days: int = 28) -> ReportData:
    """Plausible figures for a product growing by ~120 users a week."""
    stages = [
        StagePoint(
            at=now - timedelta(weeks=weeks - 1 - w),
            counts={
                "new": 90 + 3 * w,
                "activated": 60 + 2 * w,
                "active": 300 + 25 * w,
                "reactivated": 10 + w % 3,
                "at_risk": 80 + 6 * w,
                "dormant": 40 + 9 * w,
                "churned": 5 + 14 * w,
            },
        )
        for w in range(weeks)
    ]
    first_week = (now - timedelta(days=now.weekday(), weeks=weeks - 1)).date()
    retention = [
        CohortRow(
            start=first_week + timedelta(weeks=c),
            size=110 + 4 * c,
            rates=[1.0, *(round(0.55 * 0.85**k - 0.01 * (c % 3), 4) for k in range(weeks - c - 1))],
        )
        for c in range(weeks)
    ]
    active = [
        ActiveDay(
            day=(now - timedelta(days=days - 1 - d)).date(),
            dau=dau,
            wau=480 + 3 * d,
            mau=1100 + 6 * d,
            stickiness=round(dau / (1100 + 6 * d), 4),
        )
        for d in range(days)
        for dau in [160 + 2 * d - (30 if d % 7 in (5, 6) else 0)]
    ]
    nps = [
        NpsWeek(
            start=first_week + timedelta(weeks=w),
            responses=40 + w,
            promoters=18 + w,
            passives=12,
            detractors=10 - w % 4,
            nps=round(100 * ((18 + w) - (10 - w % 4)) / (40 + w), 1),
        )
        for w in range(weeks)
    ]
    return ReportData(
        generated_at=now,
        sources={
            "segmenter": "http://127.0.0.1:8001",
            "rewards": "http://127.0.0.1:8002",
            "notifier": "http://127.0.0.1:8003",
        },
        stages=stages,
        retention=retention,
        funnel=Funnel(
            days,
            [
                FunnelStep("first seen", 480),
                FunnelStep("activated", 264),
                FunnelStep("active after the activation week", 171),
            ],
        ),
        active=active,
        core=CoreUsers(
            core=212,
            mau=1262,
            segments={"core": 212, "champions": 95, "loyal": 160, "new_customers": 240, "hibernating": 130},
        ),
        nps=nps,
        economy=Economy(
            totals=PointsTotals(awarded=184_300, redeemed=96_500, expired=12_700),
            by_rule={
                "lesson_completed": 88_000,
                "daily_checkin": 51_300,
                "first_order": 30_000,
                "referral": 15_000,
            },
            budgets=[
                Budget("first_order", 50_000, 30_000, 20_000),
                Budget("referral", 20_000, 15_000, 5_000),
            ],
        ),
        campaigns=[
            Campaign(
                "welcome_nudge",
                True,
                "email",
                0.1,
                {"sent": 820, "capped": 45, "suppressed": 96, "failed": 3},
                Uplift(820, 96, 0.42, 0.31, 0.11, 0.012, 0.2, 0.95, True),
            ),
            Campaign(
                "win_back",
                True,
                "webhook",
                0.2,
                {"sent": 310, "capped": 12, "suppressed": 88, "failed": 9},
                Uplift(310, 78, 0.12, 0.09, 0.03, -0.05, 0.1, 0.95, False),
            ),
            Campaign("detractor_followup", True, "webhook", 0.0, {"sent": 40}, None),
        ],
    )
