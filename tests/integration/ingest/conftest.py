"""Fixtures: the ingest app under a real uvicorn server, publishing to the test stack's Kafka."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared import topics as contract
from tests.conftest import Stack
from tests.integration.ingest.harness import IngestServer, make_config, make_settings, start_server


@pytest.fixture
def events_topic(topics: dict[str, str]) -> str:
    return topics[contract.EVENTS]


@pytest.fixture
def ingest(stack: Stack, events_topic: str) -> Iterator[IngestServer]:
    server = start_server(make_settings(stack.bootstrap, events_topic), make_config())
    try:
        yield server
    finally:
        server.stop()
