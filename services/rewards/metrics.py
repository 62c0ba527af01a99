"""Business metrics of the rewards service (the runtime's own are registered by the builder).

Labels are bounded: `rule` is a configured rule id or a built-in one (`adjustment`,
`referral:referrer`, `referral:referee`, `badge:<id>`), `reason` a skip reason of the domain,
`outcome` one of `OUTCOMES`; never a user id. Counters count effects once their transaction
committed (a rolled-back batch counts nothing); budget gauges are refreshed from the store, so
every replica reports the same truth.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.rewards.adapters import budgets
from services.rewards.config import RewardsConfig
from services.rewards.domain.outputs import PointsAwarded, PointsExpired, PointsReversed
from services.rewards.unit import Tally, on_commit
from shared.logging import get_logger
from shared.runtime.errors import is_retryable

log = get_logger(__name__)

OUTCOMES: Final = (
    "reserved",
    "confirmed",
    "released",
    "expired",
    "insufficient_balance",
    "idempotency_conflict",
    "hold_not_open",
    "invalid_amount",
)


@dataclass
class RewardsMetrics:
    awarded: Counter
    redeemed: Counter
    expired: Counter
    reversed: Counter
    skipped: Counter
    redemptions: Counter
    budget_remaining: Gauge
    budget_limit: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RewardsMetrics:
        return cls(
            awarded=Counter(
                "userops_rewards_points_awarded", "Points awarded, by rule.", ["rule"], registry=registry
            ),
            redeemed=Counter(
                "userops_rewards_points_redeemed",
                "Points redeemed (confirmed), by the rule of the lots they were spent from.",
                ["rule"],
                registry=registry,
            ),
            expired=Counter(
                "userops_rewards_points_expired", "Points expired, by rule.", ["rule"], registry=registry
            ),
            reversed=Counter(
                "userops_rewards_points_reversed",
                "Points taken back by reversals and negative adjustments, by rule.",
                ["rule"],
                registry=registry,
            ),
            skipped=Counter(
                "userops_rewards_awards_skipped",
                "Matching rules that awarded nothing or less than asked, by rule and reason "
                "(capped, budget_exhausted, budget_partial, below_minimum, ...).",
                ["rule", "reason"],
                registry=registry,
            ),
            redemptions=Counter(
                "userops_rewards_redemptions",
                "Redemption requests and hold outcomes, by outcome.",
                ["outcome"],
                registry=registry,
            ),
            budget_remaining=Gauge(
                "userops_rewards_budget_remaining",
                "Points a budgeted rule may still award.",
                ["rule"],
                registry=registry,
            ),
            budget_limit=Gauge(
                "userops_rewards_budget_limit",
                "A budgeted rule's configured limit.",
                ["rule"],
                registry=registry,
            ),
        )

    def count_on_commit(self, session: AsyncSession, tally: Tally, outcomes: tuple[str, ...] = ()) -> None:
        """Count `tally` (and redemption `outcomes`) when `session`'s transaction commits."""
        on_commit(session, lambda: self._count(tally, outcomes))

    def _count(self, tally: Tally, outcomes: tuple[str, ...]) -> None:
        for out in tally.outputs:
            if isinstance(out, PointsAwarded):
                self.awarded.labels(rule=out.rule_id).inc(out.points)
            elif isinstance(out, PointsExpired):
                self.expired.labels(rule=out.rule_id).inc(out.points)
            elif isinstance(out, PointsReversed):
                self.reversed.labels(rule=out.rule_id).inc(out.points)
        for rule, n in tally.redeemed:
            self.redeemed.labels(rule=rule).inc(n)
        for rule, reason in tally.skipped:
            self.skipped.labels(rule=rule, reason=reason).inc()
        for outcome in outcomes:
            self.redemptions.labels(outcome=outcome).inc()

    async def refresh(self, sessions: async_sessionmaker[AsyncSession], cfg: RewardsConfig) -> None:
        async with sessions() as session:
            rows = await budgets.budget_rows(session)
        for rule in cfg.rules:
            if rule.budget is not None:
                spent = rows.get(rule.id, (rule.budget.limit, 0))[1]
                self.budget_limit.labels(rule=rule.id).set(rule.budget.limit)
                self.budget_remaining.labels(rule=rule.id).set(rule.budget.limit - spent)

    async def run(self, engine: AsyncEngine, cfg: RewardsConfig, every: float) -> None:
        """Refresh the budget gauges every `every` seconds until cancelled."""
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        while True:
            try:
                await self.refresh(sessions, cfg)
            except Exception as exc:
                if not is_retryable(exc):
                    log.exception("rewards metrics refresh failed")
            await asyncio.sleep(every)
