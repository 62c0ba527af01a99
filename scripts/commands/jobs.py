"""`userops jobs failed|replay` and `userops timers dead|replay`: the durable work that gave up.

A job fails for good after a `PermanentError` or its last attempt; a timer goes dead after its
handler failed past the bound. Both stay in the service's own database until an operator,
having fixed the cause, replays them: a replayed job is queued again (same id, so receivers
still dedupe), a replayed timer is due again (same firing id). The database is the service's
(`--service notifier`, from `USEROPS_PG_*`) or any URL (`--url`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import orjson
import typer
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from scripts.commands import fail
from shared.config import BaseServiceSettings
from shared.runtime import jobs, timers
from shared.runtime.db import create_engine, session_factory

R = TypeVar("R")

jobs_app = typer.Typer(
    help="Jobs (webhooks, emails) that failed for good: list them, queue them again.", no_args_is_help=True
)
timers_app = typer.Typer(
    help="Timers whose handler failed past the bound: list them, fire them again.", no_args_is_help=True
)

SERVICE = typer.Option(None, "--service", help="the service whose database to use, e.g. notifier")
URL = typer.Option(None, "--url", help="a database URL instead (postgresql+asyncpg://...)")
KIND = typer.Option(None, "--kind", help="only this kind")
LIMIT = typer.Option(100, "--limit", min=1, help="at most this many rows")
JSON = typer.Option(False, "--json", help="one JSON object per line instead of a table")
ALL = typer.Option(False, "--all", help="replay every one (required when no ids and no --kind are given)")


def _database(service: str | None, url: str | None) -> str:
    if (service is None) == (url is None):
        fail("give the database: --service NAME or --url URL (one of them)")
    return url or BaseServiceSettings().database_url(str(service))


def _run(url: str, work: Callable[[AsyncSession], Awaitable[R]]) -> R:
    """Run `work` in one transaction on `url`, committed if it returns; exit 1 if the database fails."""

    async def run() -> R:
        engine = create_engine(url, pool_size=1)
        try:
            async with session_factory(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (sa_exc.SQLAlchemyError, OSError) as exc:
        cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
        fail(f"database {_safe(url)}: {type(cause).__name__}: {' '.join(str(cause).split())[:300]}")


def _safe(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.rpartition("@")
    return f"{head.split('://')[0]}://***@{tail}" if sep else url


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _at(t: datetime | None) -> str:
    return "-" if t is None else t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _short(text: str | None, width: int = 60) -> str:
    text = text or ""
    return text if len(text) <= width else text[: width - 1] + "…"


def _check_selection(ids: Sequence[str], kind: str | None, everything: bool, what: str) -> None:
    if not ids and kind is None and not everything:
        fail(f"name the {what} to replay, or --kind KIND, or --all")


@jobs_app.command("failed")
def failed_cmd(
    service: str | None = SERVICE,
    url: str | None = URL,
    kind: str | None = KIND,
    limit: int = LIMIT,
    as_json: bool = JSON,
) -> None:
    """List failed jobs, the earliest failed first.

    Example: userops jobs failed --service notifier --kind webhook
    """
    found = _run(_database(service, url), lambda s: jobs.list_failed(s, kind=kind, limit=limit))
    if as_json:
        for j in found:
            typer.echo(
                orjson.dumps(
                    {
                        "id": j.id,
                        "kind": j.kind,
                        "attempts": j.attempts,
                        "maxAttempts": j.max_attempts,
                        "lastError": j.last_error,
                        "createdAt": _at(j.created_at),
                        "failedAt": _at(j.finished_at),
                        "payload": j.payload,
                    }
                ).decode()
            )
        return
    if not found:
        typer.echo("no failed jobs")
        return
    _table(
        ("id", "kind", "attempts", "failed at", "last error"),
        [
            (j.id, j.kind, f"{j.attempts}/{j.max_attempts}", _at(j.finished_at), _short(j.last_error))
            for j in found
        ],
    )


@jobs_app.command("replay")
def replay_jobs_cmd(
    ids: list[str] = typer.Argument(
        None, help="ids of failed jobs (default: every one selected by --kind/--all)"
    ),
    service: str | None = SERVICE,
    url: str | None = URL,
    kind: str | None = KIND,
    everything: bool = ALL,
) -> None:
    """Queue failed jobs again, due now, with a fresh attempt count and the same id.

    Example: userops jobs replay --service notifier --kind webhook
    """
    ids = ids or []
    _check_selection(ids, kind, everything, "job ids")
    target = _database(service, url)
    n = _run(target, lambda s: jobs.replay_failed(s, ids=ids or None, kind=kind))
    typer.echo(f"queued again: {n} job{'s' if n != 1 else ''}")
    if ids and n < len(ids):
        fail(f"{len(ids) - n} of the ids given are not failed jobs{' of kind ' + kind if kind else ''}")


@timers_app.command("dead")
def dead_cmd(
    service: str | None = SERVICE,
    url: str | None = URL,
    kind: str | None = KIND,
    limit: int = LIMIT,
    as_json: bool = JSON,
) -> None:
    """List dead timers, the longest dead first.

    Example: userops timers dead --service segmenter --kind idle
    """
    found = _run(_database(service, url), lambda s: timers.list_dead(s, kind=kind, limit=limit))
    if as_json:
        for t in found:
            typer.echo(
                orjson.dumps(
                    {
                        "kind": t.kind,
                        "key": t.key,
                        "dueAt": _at(t.due_at),
                        "attempts": t.attempts,
                        "lastError": t.last_error,
                        "deadAt": _at(t.dead_at),
                        "payload": t.payload,
                    }
                ).decode()
            )
        return
    if not found:
        typer.echo("no dead timers")
        return
    _table(
        ("kind", "key", "due at", "attempts", "dead at", "last error"),
        [
            (t.kind, t.key, _at(t.due_at), str(t.attempts), _at(t.dead_at), _short(t.last_error))
            for t in found
        ],
    )


@timers_app.command("replay")
def replay_timers_cmd(
    keys: list[str] = typer.Argument(
        None, help="keys of dead timers (default: every one selected by --kind/--all)"
    ),
    service: str | None = SERVICE,
    url: str | None = URL,
    kind: str | None = KIND,
    everything: bool = ALL,
) -> None:
    """Make dead timers due again (their original due time), with a fresh attempt count.

    Example: userops timers replay --service segmenter --kind idle user-42
    """
    keys = keys or []
    _check_selection(keys, kind, everything, "timer keys")
    target = _database(service, url)
    n = _run(target, lambda s: timers.replay_dead(s, kind=kind, keys=keys or None))
    typer.echo(f"due again: {n} timer{'s' if n != 1 else ''}")
    if keys and n < len(keys):
        fail(f"{len(keys) - n} of the keys given are not dead timers{' of kind ' + kind if kind else ''}")
