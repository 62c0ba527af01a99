"""The throttle on aiokafka's repeated log lines (services/ingest/adapters/log_throttle.py)."""

from __future__ import annotations

import logging

import pytest

from services.ingest.adapters.log_throttle import RepeatThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_repeated_message_passes_once_per_interval_and_says_how_many_were_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    throttle = RepeatThrottle(interval=30, clock=clock)
    logger = logging.getLogger("test.aiokafka.client")
    throttle.install([logger.name])
    try:
        with caplog.at_level(logging.WARNING, logger=logger.name):
            for attempt in range(1000):
                clock.now = attempt * 0.01
                logger.error("Unable connect to node with id %s: %s", 1, "refused")
            logger.error("Unable to update metadata from %s", [1])  # another message: passes
            clock.now = 31
            logger.error("Unable connect to node with id %s: %s", 1, "refused")
            logger.critical("always")
            logger.critical("always")
    finally:
        throttle.uninstall([logger.name])
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "Unable connect to node with id 1: refused",
        "Unable to update metadata from [1]",
        "Unable connect to node with id 1: refused (999 similar messages suppressed in the last 31s)",
        "always",
        "always",
    ]
    assert throttle.suppressed_total == 999
