"""One started set of the four services shared by the ops tests that need them (it takes seconds
to start; see live_stack.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import Stack
from tests.integration.ops.live_stack import (
    LIVE_ENV,
    NOTIFIER_CONFIG,
    REWARDS_CONFIG,
    LiveStack,
    start_live_stack,
    stop_live_stack,
)


@pytest.fixture(scope="session")
async def live(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveStack]:
    """ingest, segmenter, rewards and notifier (and the local sinks), ready, with the live configs."""
    folder: Path = tmp_path_factory.mktemp("live-configs")
    (folder / "rewards.yaml").write_text(REWARDS_CONFIG)
    (folder / "notifier.yaml").write_text(NOTIFIER_CONFIG)
    started = await start_live_stack(
        stack,
        configs={"rewards": folder / "rewards.yaml", "notifier": folder / "notifier.yaml"},
        extra_env=LIVE_ENV,
    )
    try:
        yield started
    finally:
        await stop_live_stack(stack, started)
