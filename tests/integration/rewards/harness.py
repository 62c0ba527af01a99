"""Run the real rewards service (`python -m services.rewards`) as a subprocess against the test stack."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx

from scripts.stack.kafka import REPO_ROOT
from scripts.stack.procs import free_port
from shared.contracts import StageChanged
from tests.conftest import plain_url

ADMIN_TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class RewardsProcess:
    env: dict[str, str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.rewards"],
            env=self.env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, timeout: float = 60) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient() as client:
            while loop.time() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"rewards exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                    )
                try:
                    if (await client.get(f"{self.url}/ready")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"rewards not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=AUTH, timeout=30)


def rewards_env(
    *,
    bootstrap: str,
    db_url: str,
    topics: dict[str, str],
    config: Path,
    group: str,
    port: int | None = None,
    extra: dict[str, str] | None = None,
) -> tuple[dict[str, str], int]:
    port = port or free_port()
    env = {
        **os.environ,
        "USEROPS_KAFKA_BOOTSTRAP": bootstrap,
        "USEROPS_REWARDS_DATABASE_URL": db_url,
        "USEROPS_REWARDS_PORT": str(port),
        "USEROPS_REWARDS_CONFIG": str(config),
        "USEROPS_REWARDS_GROUP": group,
        "USEROPS_ADMIN_TOKEN": ADMIN_TOKEN,
        "USEROPS_EVENTS_TOPIC": topics["userops.events.v1"],
        "USEROPS_LIFECYCLE_TOPIC": topics["userops.lifecycle.v1"],
        "USEROPS_REWARDS_TOPIC": topics["userops.rewards.v1"],
        "USEROPS_DEADLETTER_TOPIC": topics["userops.deadletter.v1"],
        "USEROPS_LOG_LEVEL": "WARNING",
        **(extra or {}),
    }
    return env, port


def stage_record(
    user: str, to: str, at: datetime, *, mid: str, activated: bool | None = None
) -> dict[str, Any]:
    """A `stage_changed` record as the segmenter publishes it."""
    record = StageChanged(
        id=mid,
        user_id=user,
        at=at,
        config_version="test",
        from_stage=None,
        to_stage=to,
        reason="test",
        activated=to == "activated" if activated is None else activated,
    )
    return record.to_wire()


async def query(db_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(plain_url(db_url))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def ledger_balanced(db_url: str) -> bool:
    """Every transaction sums to zero and every stored balance equals the sum of its entries."""
    unbalanced = await query(
        db_url, "SELECT transaction_id FROM ledger_entries GROUP BY transaction_id HAVING sum(amount) <> 0"
    )
    mismatched = await query(
        db_url,
        """
        WITH sums AS (
            SELECT account_owner AS user_id,
                coalesce(sum(amount) FILTER (WHERE account_kind = 'available'), 0) AS available,
                coalesce(sum(amount) FILTER (WHERE account_kind = 'pending'), 0) AS pending,
                coalesce(sum(amount) FILTER (WHERE account_kind = 'held'), 0) AS held,
                coalesce(sum(amount) FILTER (WHERE account_kind = 'debt'), 0) AS debt
            FROM ledger_entries WHERE account_kind IN ('available', 'pending', 'held', 'debt')
            GROUP BY account_owner
        )
        SELECT a.user_id FROM accounts a LEFT JOIN sums s USING (user_id)
        WHERE a.state IS NOT NULL AND (a.available, a.pending, a.held, a.debt)
            IS DISTINCT FROM (coalesce(s.available, 0), coalesce(s.pending, 0), coalesce(s.held, 0), coalesce(s.debt, 0))
        """,
    )
    return not unbalanced and not mismatched
