"""Schemathesis fuzzes every documented operation of the notifier's API: no input makes a 5xx."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from scripts.stack.sinks import Sinks
from shared import topics as t
from tests.conftest import Stack, eventually
from tests.integration.notifier.conftest import NotifierFactory, write_config
from tests.integration.notifier.harness import ADMIN_TOKEN, identify, inbox_token, produce, track

EXAMPLES = 150
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def fuzz(url: str, token: str, examples: int) -> list[int]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    cases = schema.as_strategy(GenerationMode.POSITIVE) | schema.as_strategy(GenerationMode.NEGATIVE)
    statuses: list[int] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case: schemathesis.Case[Any]) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        response = case.call_and_validate(base_url=url, headers=headers, timeout=10, checks=CHECKS)
        statuses.append(response.status_code)

    run()
    return statuses


async def test_no_generated_request_makes_a_server_error(
    stack: Stack, topics: dict[str, str], sinks: Sinks, notifier_factory: NotifierFactory, tmp_path: Path
) -> None:
    notifier = notifier_factory(write_config(tmp_path / "n.yaml", sinks.url))
    notifier.start()
    await notifier.wait_ready()
    user = f"fz-{uuid.uuid4().hex[:6]}"
    await produce(
        stack.bootstrap,
        topics[t.EVENTS],
        [identify(user, mid="i", traits={"email": "f@example.com"}), track(user, "Signed Up", mid="s")],
    )
    await eventually(lambda: sinks.mail.messages, timeout=20)
    statuses = await asyncio.to_thread(fuzz, notifier.url, ADMIN_TOKEN, EXAMPLES)
    assert len(statuses) >= EXAMPLES
    assert 200 in statuses
    assert {400, 401} & set(statuses)
    # Again as the user, with a valid inbox token: the inbox routes past their authentication.
    statuses = await asyncio.to_thread(fuzz, notifier.url, inbox_token(user), EXAMPLES // 2)
    assert 200 in statuses
