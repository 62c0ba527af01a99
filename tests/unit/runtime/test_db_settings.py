"""Database timeouts: from the service settings, checked (tests/integration/runtime/test_db_timeouts.py
shows them at work on a real PostgreSQL)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.config import BaseServiceSettings
from shared.runtime.db import create_engine

URL = "postgresql+asyncpg://postgres@127.0.0.1:1/none"


def test_the_settings_default_to_bounded_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("USEROPS_PG_CONNECT_TIMEOUT_SECONDS", "USEROPS_PG_STATEMENT_TIMEOUT_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    settings = BaseServiceSettings()
    assert (settings.pg_connect_timeout_seconds, settings.pg_statement_timeout) == (10.0, 30.0)


def test_a_statement_timeout_of_0_means_none_and_a_negative_one_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USEROPS_PG_STATEMENT_TIMEOUT_SECONDS", "0")
    assert BaseServiceSettings().pg_statement_timeout is None
    monkeypatch.setenv("USEROPS_PG_STATEMENT_TIMEOUT_SECONDS", "-1")
    with pytest.raises(ValidationError, match="pg_statement_timeout_seconds"):
        BaseServiceSettings()


def test_a_timeout_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        create_engine(URL, statement_timeout=0)
