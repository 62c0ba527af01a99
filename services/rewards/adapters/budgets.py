"""Per-rule budgets: locked in rule order after the users, spent in the same transaction."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_LOCK_BUDGETS = text(
    """
    INSERT INTO budgets (rule_id, limit_points)
    SELECT * FROM unnest(CAST(:rules AS text[]), CAST(:limits AS bigint[]))
    ON CONFLICT (rule_id) DO UPDATE SET limit_points = EXCLUDED.limit_points
    RETURNING rule_id, spent
    """
)


async def lock_budgets(session: AsyncSession, limits: Mapping[str, int]) -> dict[str, int]:
    """Lock the budget rows of `limits`' rules (created on first use, limits from the config) in
    rule order; return each rule's remaining points (limit - spent)."""
    rules = sorted(limits)
    if not rules:
        return {}
    rows = await session.execute(_LOCK_BUDGETS, {"rules": rules, "limits": [limits[r] for r in rules]})
    return {r.rule_id: limits[r.rule_id] - int(r.spent) for r in rows}


async def spend_budgets(session: AsyncSession, consumed: Mapping[str, int]) -> None:
    """Add `consumed` (negative: a reversal gave points back) to each locked budget's spend."""
    rules = sorted(r for r, n in consumed.items() if n)
    if rules:
        await session.execute(
            text(
                "UPDATE budgets b SET spent = b.spent + c.n, updated_at = now() "
                "FROM unnest(CAST(:rules AS text[]), CAST(:ns AS bigint[])) AS c(rule_id, n) "
                "WHERE b.rule_id = c.rule_id"
            ),
            {"rules": rules, "ns": [consumed[r] for r in rules]},
        )


async def budget_rows(session: AsyncSession) -> dict[str, tuple[int, int]]:
    """Rule id → (limit, spent) of every stored budget (no lock)."""
    rows = await session.execute(text("SELECT rule_id, limit_points, spent FROM budgets"))
    return {r.rule_id: (int(r.limit_points), int(r.spent)) for r in rows}
