"""`userops jobs failed|replay` and `userops timers dead|replay` against a real database."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import orjson
import typer
from sqlalchemy import text
from typer.testing import CliRunner, Result

from scripts.commands.jobs import jobs_app, timers_app
from shared.runtime.db import create_engine
from shared.runtime.schema import RUNTIME_DDL


async def _invoke(app: typer.Typer, *args: str, env: dict[str, str] | None = None) -> Result:
    # The commands run their own event loop (asyncio.run): give them a thread of their own.
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)


async def _setup(database: str) -> None:
    engine = create_engine(database, pool_size=1)
    async with engine.begin() as conn:
        for ddl in RUNTIME_DDL:
            await conn.execute(text(ddl))
        await conn.execute(
            text(
                "INSERT INTO jobs (id, kind, state, attempts, max_attempts, last_error, finished_at) VALUES"
                " ('hook:1', 'webhook', 'failed', 5, 5, 'ConnectionError: refused', now()),"
                " ('hook:2', 'webhook', 'succeeded', 1, 5, NULL, now()),"
                " ('mail:1', 'email', 'failed', 1, 5, 'PermanentError: bad address', now())"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO timers (kind, key, due_at, attempts, last_error, dead_at) VALUES"
                " ('idle', 'u1', now() - interval '1 hour', 5, 'ValueError: boom', now()),"
                " ('idle', 'u2', now() + interval '1 hour', 0, NULL, NULL)"
            )
        )
    await engine.dispose()


async def _column(database: str, sql: str) -> list[object]:
    engine = create_engine(database, pool_size=1)
    async with engine.connect() as conn:
        values = list((await conn.execute(text(sql))).scalars())
    await engine.dispose()
    return values


async def test_jobs_commands_list_and_replay_failed_jobs(database: str) -> None:
    await _setup(database)
    listed = await _invoke(jobs_app, "failed", "--url", database)
    assert listed.exit_code == 0, listed.output
    assert (
        "hook:1" in listed.output and "5/5" in listed.output and "ConnectionError: refused" in listed.output
    )
    assert "hook:2" not in listed.output
    as_json = await _invoke(jobs_app, "failed", "--url", database, "--kind", "email", "--json")
    assert [orjson.loads(line)["id"] for line in as_json.output.splitlines()] == ["mail:1"]

    unselected = await _invoke(jobs_app, "replay", "--url", database)
    assert unselected.exit_code == 1 and "--all" in unselected.output

    partly = await _invoke(jobs_app, "replay", "hook:1", "hook:2", "--url", database)
    assert partly.exit_code == 1, "hook:2 is not a failed job"
    assert "queued again: 1 job" in partly.output
    assert await _column(database, "SELECT state FROM jobs ORDER BY id") == ["queued", "succeeded", "failed"]
    assert await _column(database, "SELECT attempts FROM jobs WHERE id = 'hook:1'") == [0]

    every = await _invoke(jobs_app, "replay", "--all", "--url", database)
    assert every.exit_code == 0 and "queued again: 1 job" in every.output
    none_left = await _invoke(jobs_app, "failed", "--url", database)
    assert none_left.exit_code == 0 and "no failed jobs" in none_left.output


async def test_timers_commands_by_service_name(database: str) -> None:
    await _setup(database)
    url = urlsplit(database)
    env = {
        "USEROPS_PG_HOST": str(url.hostname),
        "USEROPS_PG_PORT": str(url.port),
        "USEROPS_PG_USER": str(url.username),
        "USEROPS_PG_PASSWORD": "",
    }
    service = url.path.lstrip("/")
    dead = await _invoke(timers_app, "dead", "--service", service, env=env)
    assert dead.exit_code == 0, dead.output
    assert "u1" in dead.output and "ValueError: boom" in dead.output and "u2" not in dead.output

    replayed = await _invoke(timers_app, "replay", "u1", "--kind", "idle", "--service", service, env=env)
    assert replayed.exit_code == 0, replayed.output
    assert "due again: 1 timer" in replayed.output
    assert await _column(database, "SELECT key FROM timers WHERE dead_at IS NULL ORDER BY key") == [
        "u1",
        "u2",
    ]


async def test_an_unreachable_database_exits_non_zero_without_printing_the_password() -> None:
    result = await _invoke(
        jobs_app, "failed", "--url", "postgresql+asyncpg://ops:s3cret@127.0.0.1:1/notifier"
    )
    assert result.exit_code == 1
    assert "error: database postgresql+asyncpg://***@127.0.0.1:1/notifier" in result.output
    assert "s3cret" not in result.output
    both = await _invoke(jobs_app, "failed", "--url", "x", "--service", "y")
    assert both.exit_code == 1 and "one of them" in both.output
