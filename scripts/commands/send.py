"""`userops send FILE.ndjson`: post recorded events to ingest and say what became of each line.

Each non-blank line is one Segment-shaped event (`.gz` files are read as gzip). Lines are posted
to `/v1/batch` in requests within ingest's limits (events and bytes per request, from
`config/ingest.yaml` when it is there, else Segment's published limits). Ingest refuses a whole
request for one bad event and names it (`batch[3].userId: ...`): that line is recorded as
rejected with ingest's reason and the rest of the request is sent again, so one bad line never
stops the others. A line that is not a JSON object is rejected here with its line number. A 429,
a 5xx or a connection error is retried with jittered exponential backoff (honouring
`Retry-After`); lines still not accepted after the last attempt are reported as failed. Events
without a `messageId` get one before their first attempt, so a retried request that had partly
landed is deduplicated by the consumers.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO, Final

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from scripts.commands import fail
from scripts.commands.batch_sender import (
    ChunkLimits,
    Outcome,
    RetryPolicy,
    Sender,
    WriteKeyRefused,
    chunks,
    read_items,
)
from scripts.commands.endpoints import EndpointError, load_endpoints

SHOWN_REJECTIONS: Final = 50


def ingest_limits(config: Path | None, batch_size: int) -> ChunkLimits:
    """Per-request limits from ingest's config file (if readable), else Segment's published ones."""
    from services.ingest.config import IngestConfig, LimitsConfig
    from shared.config import BaseServiceSettings, ConfigError, load_yaml

    path = config or BaseServiceSettings().config_dir / "ingest.yaml"
    limits = LimitsConfig()
    if config is not None or path.is_file():
        try:
            limits = load_yaml(path, IngestConfig).limits
        except ConfigError as exc:
            fail(str(exc), 2)
    return ChunkLimits(
        max_events=min(batch_size, limits.max_batch_events), max_request_bytes=limits.max_request_bytes
    )


def open_events(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """(lines, raw file): the raw file's position measures progress through a gzip file."""
    raw = path.open("rb")
    if path.suffix == ".gz":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw  # type: ignore[return-value]
    return raw, raw


def send_cmd(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="NDJSON of Segment-shaped events (.gz ok)"
    ),
    batch_size: int = typer.Option(500, "--batch-size", min=1, help="at most this many events per request"),
    retries: int = typer.Option(
        5, "--retries", min=0, help="retries per request on 429, 5xx, connection errors"
    ),
    config: Path | None = typer.Option(
        None,
        "--ingest-config",
        dir_okay=False,
        help="ingest's limits from here (default: config/ingest.yaml)",
    ),
) -> None:
    """Post events from an NDJSON file to ingest (/v1/batch) and summarize what it accepted.

    Reads USEROPS_INGEST_URL (http://127.0.0.1:8000) and USEROPS_WRITE_KEY (else
    USEROPS_DEV_WRITE_KEY, else dev-write-key). A rejected line is listed with its number and
    ingest's reason; exits 1 if any line was rejected or could not be delivered.

    Example: userops send events.ndjson.gz --batch-size 500
    """
    try:
        endpoints = load_endpoints()
    except EndpointError as exc:
        fail(str(exc), 2)
    limits = ingest_limits(config, batch_size)
    outcome = Outcome()
    err = Console(stderr=True)
    url = endpoints.url("ingest", "v1", "batch")
    try:
        lines, raw = open_events(file)
    except OSError as exc:
        fail(f"{file}: {exc.strerror}", 2)
    total = file.stat().st_size
    progress = Progress(
        TextColumn("[bold]send[/bold] {task.fields[events]} events"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    try:
        with (
            lines,
            raw,
            httpx.Client(timeout=endpoints.timeout) as client,
            progress,
        ):
            task = progress.add_task("send", total=total, events=0)
            sender = Sender(
                client,
                url,
                endpoints.write_key.get_secret_value(),
                RetryPolicy(attempts=retries + 1),
                outcome,
            )
            sent = 0
            for chunk in chunks(read_items(lines, outcome), limits, outcome):
                sender.send(chunk)
                sent += len(chunk)
                progress.update(task, completed=raw.tell(), events=sent)
            progress.update(task, completed=total, events=outcome.events)
    except WriteKeyRefused as exc:
        _summary(outcome, file)
        fail(f"{exc} (set USEROPS_WRITE_KEY to a write key of config/ingest.yaml)")
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        _summary(outcome, file)
        fail(f"{file}: cannot read: {exc}")
    _summary(outcome, file)
    if not outcome.ok:
        raise typer.Exit(1)


def _summary(outcome: Outcome, file: Path) -> None:
    out = Console()
    out.print(
        f"[bold]{escape(file.name)}[/bold]: {outcome.lines} lines: {outcome.events} events, "
        f"{outcome.malformed} malformed; {outcome.requests} requests, {outcome.retries} retries"
    )
    table = Table()
    table.add_column("status")
    table.add_column("lines", justify="right")
    table.add_row("[green]accepted[/green]", str(outcome.accepted))
    table.add_row("[red]rejected[/red]" if outcome.rejected else "rejected", str(len(outcome.rejected)))
    table.add_row("[red]failed[/red]" if outcome.failed else "failed", str(len(outcome.failed)))
    out.print(table)
    problems = sorted(
        [*((n, "rejected", r) for n, r in outcome.rejected), *((n, "failed", r) for n, r in outcome.failed)]
    )
    if not problems:
        return
    detail = Table(title="lines not accepted")
    detail.add_column("line", justify="right")
    detail.add_column("status")
    detail.add_column("reason", overflow="fold")
    for number, status, reason in problems[:SHOWN_REJECTIONS]:
        detail.add_row(str(number), status, escape(reason))
    out.print(detail)
    if len(problems) > SHOWN_REJECTIONS:
        out.print(f"... and {len(problems) - SHOWN_REJECTIONS} more lines not accepted")
