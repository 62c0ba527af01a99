"""Points appear for events and lifecycle records, with caps, tier multipliers and a readable statement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import Stack, eventually
from tests.integration.rewards.harness import RewardsProcess, ledger_balanced, stage_record
from tests.integration.segmenter.harness import produce_events, wire_event


async def user(proc: RewardsProcess, uid: str) -> Any:
    async with proc.client() as c:
        r = await c.get(f"/v1/users/{uid}")
        return r.json() if r.status_code == 200 else None


async def test_lessons_purchases_with_gold_and_the_activation_bonus(
    stack: Stack, topics: dict[str, str], database: str, rewards: RewardsProcess
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    day = now - timedelta(hours=3)
    events = [
        wire_event("lena", "Lesson Completed", day + timedelta(minutes=i), mid=f"l{i}") for i in range(7)
    ]
    # The next day's lessons count against a new daily cap.
    events += [wire_event("lena", "Lesson Completed", day - timedelta(days=1), mid="l-yesterday")]
    # 5,000 spent lifts the buyer to gold at once; the next order earns x1.5 (floor).
    events += [
        wire_event("gus", "Order Completed", day, mid="o1", properties={"revenue": 5000, "order_id": "A"}),
        wire_event(
            "gus",
            "Order Completed",
            day + timedelta(minutes=1),
            mid="o2",
            properties={"revenue": 99.99, "order_id": "B"},
        ),
    ]
    await produce_events(stack.bootstrap, topics["userops.events.v1"], events)
    await produce_events(
        stack.bootstrap, topics["userops.lifecycle.v1"], [stage_record("ada", "activated", day, mid="life-1")]
    )

    lena = await eventually(
        lambda: _with(user(rewards, "lena"), lambda u: u["balance"]["available"] == 60), 60
    )
    assert lena["balance"] == {"available": 60, "pending": 0, "held": 0, "owed": 0}
    gus = await eventually(lambda: _with(user(rewards, "gus"), lambda u: u["balance"]["pending"] == 5149), 60)
    assert gus["tier"]["name"] == "gold"
    ada = await eventually(
        lambda: _with(user(rewards, "ada"), lambda u: u["balance"]["available"] == 100), 60
    )
    assert ada["tier"]["name"] == "member"

    async with rewards.client() as c:
        page = (await c.get("/v1/users/gus/statement")).json()
        assert [line["description"] for line in page["lines"]] == [
            "Earned 149 points: purchase (pending)",
            "Earned 5000 points: purchase (pending)",
        ]
        assert (await c.get("/v1/users/nobody")).status_code == 404
        assert (await c.get("/v1/users/nobody/statement")).status_code == 404
        unauthorized = await c.get("/v1/users/gus", headers={"Authorization": "Bearer wrong"})
        assert unauthorized.status_code == 401 and unauthorized.json()["code"] == "unauthorized"
        metrics = (await c.get("/metrics")).text
    assert 'userops_rewards_points_awarded_total{rule="lesson_completed"} 60.0' in metrics
    assert 'userops_rewards_points_awarded_total{rule="activation_bonus"} 100.0' in metrics
    assert await ledger_balanced(database)


async def _with(coro: Any, check: Any) -> Any:
    value = await coro
    return value if value is not None and check(value) else None


async def test_referrals_pay_both_sides_once_and_never_a_cycle_or_self(
    stack: Stack, topics: dict[str, str], database: str, rewards: RewardsProcess
) -> None:
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    events = topics["userops.events.v1"]
    await produce_events(
        stack.bootstrap,
        events,
        [
            wire_event("ann", "Signed Up", t, mid="s-ann"),
            wire_event(
                "bob", "Signed Up", t + timedelta(minutes=1), mid="s-bob", properties={"referrer_id": "ann"}
            ),
            wire_event("cat", "Signed Up", t, mid="s-cat", properties={"referrer_id": "cat"}),
        ],
    )
    await eventually(lambda: user(rewards, "bob"), 60)
    # ann now claims bob, who was referred by ann: a cycle, refused.
    await produce_events(
        stack.bootstrap,
        events,
        [
            wire_event(
                "ann", "Signed Up", t + timedelta(minutes=2), mid="s-ann-2", properties={"referrer_id": "bob"}
            )
        ],
    )
    await eventually(lambda: _processed(database, 4), 60)
    await produce_events(
        stack.bootstrap,
        topics["userops.lifecycle.v1"],
        [
            stage_record(u, "activated", t + timedelta(minutes=5), mid=f"act-{u}")
            for u in ("ann", "bob", "cat")
        ]
        + [stage_record("bob", "activated", t + timedelta(minutes=6), mid="act-bob-again")],
    )
    await eventually(lambda: _processed(database, 8), 60)
    balances = {u: (await user(rewards, u))["balance"]["available"] for u in ("ann", "bob", "cat")}
    # activation bonus 100 each; bob's referral pays 200 to bob and 200 to ann, once.
    assert balances == {"ann": 300, "bob": 300, "cat": 100}
    assert (await user(rewards, "bob"))["referredBy"] == "ann"
    assert (await user(rewards, "ann"))["referredBy"] is None
    assert await ledger_balanced(database)


async def _processed(database: str, n: int) -> bool:
    from tests.integration.rewards.harness import query

    rows = await query(database, "SELECT count(*) AS n FROM processed_messages")
    return bool(rows[0]["n"] == n)
