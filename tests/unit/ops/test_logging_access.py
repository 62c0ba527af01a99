"""No service writes an access log: its lines would carry query-string secrets."""

from __future__ import annotations

import logging

from shared.logging import configure_logging


def test_configure_logging_keeps_the_access_log_off() -> None:
    configure_logging("test", "DEBUG")
    access = logging.getLogger("uvicorn.access")
    assert access.disabled
    assert not logging.getLogger("uvicorn.error").disabled
