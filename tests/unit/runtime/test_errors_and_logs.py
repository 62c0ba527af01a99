"""Failure classification, log-once retries, and the one output id function."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import exc as sa_exc
from structlog.testing import capture_logs

from shared import ids
from shared.runtime import outbox
from shared.runtime.errors import is_retryable
from shared.runtime.loop import WorkLoop


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "retryable"),
    [
        ("25006", True),  # read-only transaction: connected to a standby after a failover
        ("57014", True),  # query cancelled (statement_timeout, pg_cancel_backend)
        ("55P03", True),  # lock timeout
        ("55000", True),  # the database does not allow connections now (maintenance)
        ("40001", True),
        ("57P01", True),
        ("23505", False),  # unique violation: a bug, not infrastructure
        ("22P02", False),
    ],
)
def test_sqlstates_after_failover_cancel_or_lock_timeout_are_retryable(
    sqlstate: str, retryable: bool
) -> None:
    error = sa_exc.DBAPIError("UPDATE t SET x = 1", {}, _PgError(sqlstate))
    assert is_retryable(error) is retryable


def test_a_code_bug_is_not_retryable() -> None:
    assert not is_retryable(KeyError("x"))
    assert is_retryable(ConnectionRefusedError())


async def test_the_work_loop_logs_an_outage_once_and_its_end_once() -> None:
    loop = WorkLoop("outbox relay", drain_on_stop=False)
    calls = 0

    async def step() -> int:
        nonlocal calls
        calls += 1
        if calls <= 4:
            raise ConnectionRefusedError("down")
        loop.stop()
        return 0

    async def idle() -> float:
        return 0.01

    with capture_logs() as logs:
        await asyncio.wait_for(loop.loop(step, idle), 10)
    events = [e["event"] for e in logs if e["log_level"] != "debug"]
    assert events == ["outbox relay failed; retrying", "outbox relay recovered"]
    assert logs[-1]["attempts"] == 5
    assert loop.healthy


def test_output_ids_come_from_the_one_shared_function() -> None:
    assert getattr(outbox, "output_id", ids.output_id) is ids.output_id
    assert not hasattr(outbox, "_NAMESPACE")
