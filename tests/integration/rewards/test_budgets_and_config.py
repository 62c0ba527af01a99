"""A rule budget holds across two replicas in one group; a bad config stops the service (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from scripts.stack.kafka import REPO_ROOT
from tests.conftest import Stack, eventually
from tests.integration.rewards.conftest import EXAMPLE_CONFIG, RewardsFactory, config_with
from tests.integration.rewards.harness import ledger_balanced, query, rewards_env
from tests.integration.segmenter.harness import produce_events, wire_event

PROMO = {
    "id": "promo",
    "event": "Promo Claimed",
    "points": 200,
    "budget": {"limit": 1000, "overflow": "stop"},
}
OPEN_ENDED = {
    "id": "survey",
    "event": "Survey Answered",
    "points": 30,
    "budget": {"limit": 100, "overflow": "partial"},
}


async def test_a_budget_is_never_exceeded_across_two_replicas(
    stack: Stack, topics: dict[str, str], database: str, rewards_factory: RewardsFactory, tmp_path: Path
) -> None:
    lessons = {
        "id": "lesson_completed",
        "event": "Lesson Completed",
        "points": 10,
        "caps": [{"limit": 50, "period": "day"}],
    }
    config = config_with(tmp_path, rules=[PROMO, OPEN_ENDED, lessons])
    replicas = [rewards_factory(config), rewards_factory(config)]
    for r in replicas:
        r.start()
    for r in replicas:
        await r.wait_ready()
    now = datetime.now(UTC)
    events = [
        wire_event(f"u{i}", "Promo Claimed", now + timedelta(milliseconds=i), mid=f"p{i}") for i in range(60)
    ]
    events += [wire_event(f"u{i}", "Survey Answered", now, mid=f"s{i}") for i in range(60)]
    # A capped rule beside them: 8 lessons of one user in one day never exceed 50 points.
    events += [
        wire_event("u0", "Lesson Completed", now + timedelta(seconds=i), mid=f"l{i}") for i in range(8)
    ]
    await produce_events(stack.bootstrap, topics["userops.events.v1"], events)

    async def settled() -> bool:
        rows = await query(database, "SELECT count(*) AS n FROM processed_messages")
        return bool(rows[0]["n"] == len(events))

    await eventually(settled, 60)
    spent = {r["rule_id"]: r["spent"] for r in await query(database, "SELECT rule_id, spent FROM budgets")}
    assert spent == {"promo": 1000, "survey": 100}
    awards = await query(
        database,
        "SELECT rule_id, count(*) AS n, sum(-e.amount) AS points FROM ledger_transactions t "
        "JOIN ledger_entries e ON e.transaction_id = t.id AND e.account_kind = 'rule' "
        "WHERE t.kind = 'award' GROUP BY rule_id ORDER BY rule_id",
    )
    # stop: 5 whole awards of 200; partial: 3 of 30 and one of the 10 left.
    assert [(r["rule_id"], r["n"], r["points"]) for r in awards] == [
        ("lesson_completed", 5, 50),
        ("promo", 5, 1000),
        ("survey", 4, 100),
    ]
    assert await ledger_balanced(database)
    async with httpx.AsyncClient(
        base_url=replicas[0].url, headers={"Authorization": "Bearer test-admin-token"}
    ) as c:
        budgets = (await c.get("/v1/budgets")).json()
    assert budgets == [
        {"ruleId": "promo", "limit": 1000, "spent": 1000, "remaining": 0, "overflow": "stop"},
        {"ruleId": "survey", "limit": 100, "spent": 100, "remaining": 0, "overflow": "partial"},
    ]


def test_a_bad_config_stops_the_service_naming_the_field(
    tmp_path: Path, database: str, topics: dict[str, str], stack: Stack
) -> None:
    bad = EXAMPLE_CONFIG.read_text().replace("points: 10\n", "points: -10\n", 1)
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    env, _ = rewards_env(bootstrap=stack.bootstrap, db_url=database, topics=topics, config=path, group="g")
    done = subprocess.run(
        [sys.executable, "-m", "services.rewards"], env=env, cwd=REPO_ROOT, capture_output=True, timeout=60
    )
    assert done.returncode == 2
    message = done.stderr.decode()
    assert str(path) in message and "rules[0].points" in message, message
