"""`userops db upgrade <service>` migrates a real database, and refuses what it does not know."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg  # type: ignore[import-untyped]

from scripts.stack.kafka import REPO_ROOT
from scripts.stack.procs import free_port
from tests.conftest import plain_url


def userops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.cli", *args],
        env=dict(os.environ),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_upgrade_creates_the_schema_and_is_idempotent(database: str) -> None:
    for _ in range(2):
        done = userops("db", "upgrade", "segmenter", "--url", database)
        assert done.returncode == 0, done.stderr
        assert "segmenter: migrated to head" in done.stdout
    conn = await asyncpg.connect(plain_url(database))
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch("select tablename from pg_tables where schemaname = 'public'")
        }
        version = await conn.fetchval("select version_num from alembic_version")
    finally:
        await conn.close()
    assert {"processed_messages", "timers"} <= tables
    assert version


def test_unknown_service_and_unreachable_database_fail_non_zero() -> None:
    unknown = userops("db", "upgrade", "ingest")
    assert unknown.returncode == 1
    assert "unknown service 'ingest'; choose one of" in unknown.stderr
    assert "segmenter" in unknown.stderr
    down = userops(
        "db", "upgrade", "segmenter", "--url", f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x"
    )
    assert down.returncode == 1
    assert "segmenter: migration failed" in down.stderr
