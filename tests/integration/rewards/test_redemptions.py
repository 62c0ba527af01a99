"""Redemptions and adjustments through the API: one balance, many concurrent requests, idempotency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.conftest import Stack, eventually
from tests.integration.rewards.conftest import RewardsFactory, config_with
from tests.integration.rewards.harness import ledger_balanced, query
from tests.integration.segmenter.harness import produce_events, wire_event


async def _account(c: httpx.AsyncClient, uid: str) -> int | None:
    r = await c.get(f"/v1/users/{uid}")
    return r.json()["balance"]["available"] if r.status_code == 200 else None


async def test_concurrent_redemptions_idempotency_and_hold_expiry(
    stack: Stack, topics: dict[str, str], database: str, rewards_factory: RewardsFactory, tmp_path: Path
) -> None:
    proc = rewards_factory(config_with(tmp_path, holds={"ttl": "3s"}))
    proc.start()
    await proc.wait_ready()
    now = datetime.now(UTC)
    await produce_events(
        stack.bootstrap, topics["userops.events.v1"], [wire_event("rita", "Lesson Completed", now, mid="m1")]
    )
    async with proc.client() as c:
        await eventually(lambda: _account(c, "rita"), 60)
        credit = {"points": 990, "reason": "goodwill", "actor": "ops@example.com"}
        made = await c.post("/v1/users/rita/adjustments", json=credit, headers={"Idempotency-Key": "adj-1"})
        assert made.status_code == 201, made.text
        again = await c.post("/v1/users/rita/adjustments", json=credit, headers={"Idempotency-Key": "adj-1"})
        assert again.status_code == 201 and again.json() == made.json()
        assert await _account(c, "rita") == 1000

        # 50 concurrent reserves of 30 against 1,000 points: exactly 33 succeed.
        async def reserve(i: int) -> httpx.Response:
            return await c.post(
                "/v1/users/rita/redemptions", json={"points": 30}, headers={"Idempotency-Key": f"r-{i}"}
            )

        answers = await asyncio.gather(*(reserve(i) for i in range(50)))
        codes = sorted(a.status_code for a in answers)
        assert codes.count(201) == 1000 // 30 and codes.count(409) == 50 - 1000 // 30, codes
        assert all(a.json()["code"] == "insufficient_balance" for a in answers if a.status_code == 409)
        held = [a.json() for a in answers if a.status_code == 201]
        user = (await c.get("/v1/users/rita")).json()
        assert user["balance"] == {"available": 1000 - 33 * 30, "pending": 0, "held": 33 * 30, "owed": 0}

        # Idempotency: the same key and body → the original answer; another body → 422.
        first = held[0]["redemptionId"]
        same = await c.post(
            "/v1/users/rita/redemptions", json={"points": 30}, headers={"Idempotency-Key": first}
        )
        assert same.status_code == 201 and same.json() == held[0]
        other = await c.post(
            "/v1/users/rita/redemptions", json={"points": 31}, headers={"Idempotency-Key": first}
        )
        assert other.status_code == 422 and other.json()["code"] == "idempotency_conflict"

        # Confirm one (twice: the same answer), release one; the others expire by timer.
        ok = await c.post(f"/v1/users/rita/redemptions/{first}/confirm")
        assert ok.status_code == 200 and ok.json()["state"] == "confirmed"
        assert (await c.post(f"/v1/users/rita/redemptions/{first}/confirm")).json() == ok.json()
        gone = await c.post(f"/v1/users/rita/redemptions/{held[1]['redemptionId']}/release")
        assert gone.status_code == 200 and gone.json()["state"] == "released"
        late = await c.post(f"/v1/users/rita/redemptions/{held[1]['redemptionId']}/confirm")
        assert late.status_code == 409
        assert (await c.post("/v1/users/rita/redemptions/nope/confirm")).status_code == 404
        assert (
            await c.post("/v1/users/ghost/redemptions", json={"points": 1}, headers={"Idempotency-Key": "k"})
        ).status_code == 404

        await eventually(lambda: _available_is(c, 1000 - 30), 30)
        states = await query(database, "SELECT state, count(*) AS n FROM redemptions GROUP BY state")
        assert {r["state"]: r["n"] for r in states} == {
            "confirmed": 1,
            "released": 1,
            "expired": 31,
            "refused": 17,
        }

        # A negative adjustment is a linked reversal of the award it names.
        lots = await query(database, "SELECT id FROM lots WHERE user_id = 'rita' AND rule_id = 'adjustment'")
        debit = {"points": -100, "reason": "fraud", "actor": "ops", "reverses": lots[0]["id"]}
        taken = await c.post("/v1/users/rita/adjustments", json=debit, headers={"Idempotency-Key": "adj-2"})
        assert taken.status_code == 201, taken.text
        unlinked = await c.post(
            "/v1/users/rita/adjustments",
            json={**debit, "reverses": None},
            headers={"Idempotency-Key": "adj-3"},
        )
        assert unlinked.status_code == 422
        assert await _account(c, "rita") == 1000 - 30 - 100
        lines = (await c.get("/v1/users/rita/statement", params={"limit": 200})).json()["lines"]
        assert lines[0]["description"] == "Reversed by ops: adjustment (fraud)"
        assert any(line["description"] == "Adjustment by ops@example.com: goodwill" for line in lines)
    assert await ledger_balanced(database)


async def _available_is(c: httpx.AsyncClient, n: int) -> bool:
    return await _account(c, "rita") == n
