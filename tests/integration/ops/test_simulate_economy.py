"""`GET /v1/economy` (rewards): points awarded, redeemed and expired, per rule, and the budgets —
what the demo's summary prints — checked to the point against a known history."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import Stack, eventually
from tests.integration.rewards.conftest import config_with
from tests.integration.rewards.harness import RewardsProcess, rewards_env
from tests.integration.segmenter.harness import produce_events, wire_event

RULES = [
    {"id": "lesson_completed", "event": "Lesson Completed", "points": 10},
    {
        "id": "purchase",
        "event": "Order Completed",
        "proportional": {"property": "revenue", "points_per_unit": 1},
        "reversed_by": {"event": "Order Refunded", "match": "order_id"},
    },
    {"id": "promo", "event": "Promo Claimed", "points": 5, "budget": {"limit": 100, "overflow": "stop"}},
]


@pytest.fixture
async def rewards(
    stack: Stack, topics: dict[str, str], database: str, tmp_path: Path
) -> AsyncIterator[RewardsProcess]:
    config = config_with(tmp_path, rules=RULES, expiry={"after": "30d"})
    env, port = rewards_env(
        bootstrap=stack.bootstrap,
        db_url=database,
        topics=topics,
        config=config,
        group=f"rewards-{uuid.uuid4().hex[:8]}",
    )
    proc = RewardsProcess(env, port, tmp_path / "rewards.log")
    proc.start()
    await proc.wait_ready()
    yield proc
    proc.terminate()


async def test_economy_sums_awards_redemptions_expiry_and_reversals_per_rule(
    stack: Stack, topics: dict[str, str], rewards: RewardsProcess
) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=40)  # its lot expired 10 days ago: the expiry timer fires at once
    events = [
        wire_event("ann", "Lesson Completed", now - timedelta(minutes=i), mid=f"l{i}") for i in range(3)
    ]
    events += [
        wire_event("ben", "Lesson Completed", old, mid="old"),
        wire_event("cy", "Order Completed", now, mid="o1", properties={"order_id": "A", "revenue": 50}),
        wire_event(
            "cy", "Order Refunded", now + timedelta(seconds=1), mid="r1", properties={"order_id": "A"}
        ),
        wire_event("cy", "Promo Claimed", now, mid="p1"),
    ]
    await produce_events(stack.bootstrap, topics["userops.events.v1"], events)
    expected_rules = {
        "lesson_completed": {"awarded": 40, "reversed": 0, "expired": 10},
        "promo": {"awarded": 5, "reversed": 0, "expired": 0},
        "purchase": {"awarded": 50, "reversed": 50, "expired": 0},
    }
    async with rewards.client() as c:

        async def settled() -> dict[str, object] | None:
            body: dict[str, object] = (await c.get("/v1/economy")).json()
            return body if body["by_rule"] == expected_rules else None

        await eventually(settled, 60)
        held = await c.post(
            "/v1/users/ann/redemptions", json={"points": 20}, headers={"Idempotency-Key": "k1"}
        )
        assert held.status_code == 201, held.text
        # A reserve is not a redemption yet: only confirmed points count as redeemed.
        assert (await c.get("/v1/economy")).json()["redeemed"] == 0
        assert (await c.post("/v1/users/ann/redemptions/k1/confirm")).status_code == 200
        economy = (await c.get("/v1/economy")).json()
    assert economy == {
        "awarded": 95,
        "redeemed": 20,
        "expired": 10,
        "by_rule": expected_rules,
        "budgets": [{"ruleId": "promo", "limit": 100, "spent": 5, "remaining": 95, "overflow": "stop"}],
    }
    async with httpx.AsyncClient(base_url=rewards.url) as anonymous:
        refused = await anonymous.get("/v1/economy")
    assert refused.status_code == 401 and set(refused.json()) == {"code", "message"}
