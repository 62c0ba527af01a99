"""Three hundred simulated users over 60 simulated days: the live service's balances, tiers and
badges equal an independent calculation written here, and `userops rewards simulate` over the
same history awards what the live service awarded, rule by rule.

The calculation below knows the example rules (config/rewards.yaml) as a person reads them: 10
points per lesson, at most 50 per UTC day; floor(revenue) points per order, x1.5 once gold
(5,000 earned), pending for 14 days; 100 points at activation; a check-in streak earns a badge
and 70 points at every 7th consecutive day. Tiers promote at once; demotion reviews fall after
the 60 days.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from scripts.commands.rewards import rewards_app
from shared.events import format_ts
from tests.conftest import Stack, eventually
from tests.integration.rewards.conftest import EXAMPLE_CONFIG
from tests.integration.rewards.harness import RewardsProcess, ledger_balanced, query, stage_record
from tests.integration.segmenter.harness import produce_events, wire_event

USERS = 300
DAYS = 60
PENDING = timedelta(days=14)


@dataclass
class Expected:
    available: int = 0
    pending: int = 0
    earned: int = 0
    lessons: dict[date, int] = field(default_factory=dict)
    streak_last: date | None = None
    streak: int = 0
    badges: int = 0

    def tier(self) -> str:
        return "gold" if self.earned >= 5000 else "silver" if self.earned >= 1000 else "member"

    def add(self, points: int, pending: bool) -> None:
        self.earned += points
        if pending:
            self.pending += points
        else:
            self.available += points


def history(now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Expected]]:
    """Events, lifecycle records and the expected outcome of each user."""
    rng = random.Random(60)
    start = now - timedelta(days=DAYS)
    events: list[dict[str, Any]] = []
    lifecycle: list[dict[str, Any]] = []
    expected: dict[str, Expected] = {}
    for u in range(USERS):
        uid = f"sim{u:03d}"
        x = expected[uid] = Expected()
        first = start + timedelta(days=rng.randint(0, 4), hours=7)
        lifecycle.append(stage_record(uid, "activated", first - timedelta(minutes=1), mid=f"act-{uid}"))
        x.add(100, False)
        keen = rng.uniform(0.2, 0.9)
        for d in range(DAYS):
            t = first + timedelta(days=d)
            if t >= now - timedelta(hours=1) or rng.random() > keen:
                continue
            for i in range(rng.randint(0, 7)):
                t += timedelta(minutes=rng.randint(1, 20))
                kind = rng.choices(["Lesson Completed", "Checked In", "Order Completed"], [6, 2, 1])[0]
                mid = f"{uid}-{d}-{i}"
                if kind == "Order Completed":
                    if abs((t + PENDING) - now) < timedelta(hours=1):
                        continue  # too close to the release instant to tell pending from available
                    revenue = Decimal(rng.randint(50, 150_000)) / 100
                    factor = Decimal("1.5") if x.tier() == "gold" else Decimal(1)
                    points = int((revenue * factor).to_integral_value(rounding=ROUND_FLOOR))
                    x.add(points, t + PENDING > now)
                    props: dict[str, Any] = {"revenue": float(revenue), "order_id": mid}
                elif kind == "Lesson Completed":
                    used = x.lessons.get(t.date(), 0)
                    if used < 50:
                        x.lessons[t.date()] = used + 10
                        x.add(10, False)
                    props = {}
                else:
                    day = t.date()
                    if x.streak_last is None or day > x.streak_last:
                        x.streak = x.streak + 1 if x.streak_last == day - timedelta(days=1) else 1
                        x.streak_last = day
                        if x.streak % 7 == 0:
                            x.badges += 1
                            x.add(70, False)
                    props = {}
                events.append(wire_event(uid, kind, t, mid=mid, properties=props))
    events.sort(key=lambda e: e["timestamp"])
    return events, lifecycle, expected


async def test_sixty_days_of_three_hundred_users(
    stack: Stack, topics: dict[str, str], database: str, rewards: RewardsProcess, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    events, lifecycle, expected = history(now)
    assert len(events) > 10_000
    await produce_events(stack.bootstrap, topics["userops.lifecycle.v1"], lifecycle)
    await produce_events(stack.bootstrap, topics["userops.events.v1"], events)

    async def settled() -> bool:
        done = (await query(database, "SELECT count(*) AS n FROM processed_messages"))[0]["n"]
        due = await query(
            database, "SELECT count(*) AS n FROM timers WHERE due_at <= now() AND dead_at IS NULL"
        )
        return bool(done == len(events) + len(lifecycle) and due[0]["n"] == 0)

    await eventually(settled, 150, interval=0.5)
    rows = await query(
        database, "SELECT user_id, available, pending, tier, state->'badges' AS badges FROM accounts"
    )
    live = {r["user_id"]: (r["available"], r["pending"], r["tier"], orjson.loads(r["badges"])) for r in rows}
    calculated = {
        uid: (x.available, x.pending, x.tier(), {"week_streak": x.badges} if x.badges else {})
        for uid, x in expected.items()
    }
    assert live == calculated
    assert {t for _, _, t, _ in live.values()} == {"member", "silver", "gold"}
    assert await ledger_balanced(database)

    # The simulation over the same recorded history awards what the live service awarded.
    (tmp_path / "events.ndjson").write_bytes(b"\n".join(orjson.dumps(e) for e in events))
    (tmp_path / "lifecycle.ndjson").write_bytes(b"\n".join(orjson.dumps(r) for r in lifecycle))
    result = CliRunner().invoke(
        rewards_app,
        [
            "simulate",
            str(tmp_path / "events.ndjson"),
            "--config",
            str(EXAMPLE_CONFIG),
            "--lifecycle",
            str(tmp_path / "lifecycle.ndjson"),
            "--until",
            format_ts(now),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    simulated = orjson.loads(result.output)
    awarded = await query(
        database,
        "SELECT t.rule_id, count(*) AS n, sum(-e.amount) AS points FROM ledger_transactions t "
        "JOIN ledger_entries e ON e.transaction_id = t.id AND e.account_kind = 'rule' "
        "WHERE t.kind = 'award' GROUP BY t.rule_id",
    )
    assert {r["rule_id"]: (r["n"], r["points"]) for r in awarded} == {
        rule: (t["awards"], t["awarded"]) for rule, t in simulated["rules"].items() if t["awards"]
    }
