"""Schemathesis fuzzes every documented operation from /openapi.json: no input makes a 5xx."""

from __future__ import annotations

import asyncio
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from tests.conftest import Stack
from tests.integration.ingest.harness import IngestServer, basic_auth, read_topic

EXAMPLES = 150
# No 5xx, and every answer is documented: its status, content type and body schema.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


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
        response = case.call_and_validate(base_url=url, headers=basic_auth(), timeout=10, checks=CHECKS)
        statuses.append(response.status_code)

    run()
    return statuses


async def test_no_generated_request_makes_a_server_error(
    stack: Stack, ingest: IngestServer, events_topic: str
) -> None:
    statuses = await asyncio.to_thread(fuzz, ingest.url)
    assert len(statuses) >= EXAMPLES
    # The fuzzing reached both sides of validation: accepted events and refusals.
    assert 200 in statuses
    assert 400 in statuses
    assert await read_topic(stack.bootstrap, events_topic)
