"""Schemathesis fuzzes every documented operation of the rewards API: no input makes a 5xx."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from tests.conftest import Stack, eventually
from tests.integration.rewards.harness import AUTH, RewardsProcess, ledger_balanced
from tests.integration.segmenter.harness import produce_events, wire_event

EXAMPLES = 150
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance]


def fuzz(url: str) -> list[int]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    cases = schema.as_strategy(GenerationMode.POSITIVE) | schema.as_strategy(GenerationMode.NEGATIVE)
    statuses: list[int] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case: schemathesis.Case[Any]) -> None:
        if (
            case.path_parameters
            and "user_id" in case.path_parameters
            and case.path_parameters["user_id"] == ""
        ):
            return
        response = case.call_and_validate(base_url=url, headers=AUTH, timeout=10, checks=CHECKS)
        statuses.append(response.status_code)

    run()
    return statuses


async def test_no_generated_request_makes_a_server_error(
    stack: Stack, topics: dict[str, str], database: str, rewards: RewardsProcess
) -> None:
    await produce_events(
        stack.bootstrap,
        topics["userops.events.v1"],
        [wire_event("0", "Lesson Completed", datetime.now(UTC), mid="m")],
    )

    async def known() -> bool:
        async with rewards.client() as c:
            return (await c.get("/v1/users/0")).status_code == 200

    await eventually(known, 60)
    statuses = await asyncio.to_thread(fuzz, rewards.url)
    assert len(statuses) >= EXAMPLES
    assert not [s for s in statuses if s >= 500]
    assert 200 in statuses and 404 in statuses and 400 in statuses
    assert await ledger_balanced(database)
