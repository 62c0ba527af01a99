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
import random
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import httpx
import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from scripts.commands import fail
from scripts.commands.endpoints import EndpointError, load_endpoints

WRAPPER_BYTES: Final = len(b'{"batch":[]}')
RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
ITEM: Final = re.compile(r"^batch\[(\d+)\](?:\.|: ?)?")
SHOWN_REJECTIONS: Final = 50


@dataclass(frozen=True, slots=True)
class ChunkLimits:
    """What one request may carry: ingest's per-request limits (and a smaller event count if asked)."""

    max_events: int = 500
    max_request_bytes: int = 500 * 1024


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts per request and the backoff between them (full jitter in [half, full])."""

    attempts: int = 6
    initial: float = 0.5
    maximum: float = 10.0

    def delay(self, attempt: int, retry_after: str | None, rand: Callable[[], float]) -> float:
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self.maximum * 3)
            except ValueError:
                pass
        base: float = min(self.maximum, self.initial * 2.0 ** (attempt - 1))
        return base / 2 + rand() * base / 2


@dataclass(frozen=True, slots=True)
class Item:
    """One line of the file, serialized for the request."""

    line: int
    body: bytes


@dataclass
class Outcome:
    """What became of the file's lines."""

    lines: int = 0
    accepted: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    requests: int = 0
    retries: int = 0

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.failed


class WriteKeyRefused(Exception):
    """Ingest refused the write key (401/403): nothing can be sent with it."""


def read_items(stream: IO[bytes], outcome: Outcome) -> Iterator[Item]:
    """The events of an NDJSON stream; a line that is not a JSON object is rejected (line number)."""
    for number, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        outcome.lines += 1
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            outcome.rejected.append((number, f"malformed JSON: {exc}"))
            continue
        if not isinstance(event, dict):
            outcome.rejected.append((number, f"must be a JSON object, not {_json_type(event)}"))
            continue
        if not event.get("messageId"):
            event["messageId"] = str(uuid.uuid4())  # the same on every retry: consumers dedupe
        yield Item(number, orjson.dumps(event))


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def chunks(items: Iterator[Item], limits: ChunkLimits, outcome: Outcome) -> Iterator[list[Item]]:
    """Consecutive items grouped into requests within `limits`; an item too big for any request
    is rejected here."""
    group: list[Item] = []
    size = WRAPPER_BYTES
    for item in items:
        alone = WRAPPER_BYTES + len(item.body)
        if alone > limits.max_request_bytes:
            outcome.rejected.append(
                (
                    item.line,
                    f"{len(item.body)} bytes: over ingest's {limits.max_request_bytes}-byte request limit",
                )
            )
            continue
        extra = len(item.body) + (1 if group else 0)
        if group and (len(group) >= limits.max_events or size + extra > limits.max_request_bytes):
            yield group
            group, size, extra = [], WRAPPER_BYTES, len(item.body)
        group.append(item)
        size += extra
    if group:
        yield group


def _error(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of an ingest error answer (`{"code", "message"}`), or the raw text."""
    try:
        body = response.json()
        return str(body.get("code", "")), str(body.get("message", response.text))
    except (ValueError, AttributeError):
        return "", response.text.strip()[:300] or response.reason_phrase


class Sender:
    """Posts chunks to ingest's `/v1/batch`, retrying what may succeed later, isolating bad items."""

    def __init__(
        self,
        client: httpx.Client,
        url: str,
        write_key: str,
        retry: RetryPolicy,
        outcome: Outcome,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._url = url
        self._auth = (write_key, "")
        self._retry = retry
        self._sleep = sleep
        self._rand = rand
        self.outcome = outcome

    def send(self, chunk: list[Item]) -> None:
        """Send one chunk; every item ends accepted, rejected (with ingest's reason) or failed."""
        pending: deque[list[Item]] = deque([chunk])
        while pending:
            group = pending.popleft()
            result = self._post(group)
            if isinstance(result, str):
                self.outcome.failed.extend((item.line, result) for item in group)
                continue
            status = result.status_code
            if status == 200:
                self.outcome.accepted += len(group)
            elif status in (401, 403):
                code, message = _error(result)
                raise WriteKeyRefused(f"ingest answered {status} {code}: {message}")
            elif status in (400, 413):
                _, message = _error(result)
                found = ITEM.match(message)
                index = int(found.group(1)) if found else None
                if index is not None and index < len(group):
                    self.outcome.rejected.append((group[index].line, message[found.end() :] or message))  # type: ignore[union-attr]
                    rest = group[:index] + group[index + 1 :]
                    if rest:
                        pending.appendleft(rest)
                elif len(group) == 1:
                    self.outcome.rejected.append((group[0].line, message))
                else:  # the request as a whole (e.g. its size): halve it
                    half = len(group) // 2
                    pending.extendleft([group[half:], group[:half]])
            else:
                code, message = _error(result)
                reason = f"{status} {code}: {message}".replace("  ", " ")
                self.outcome.failed.extend((item.line, reason) for item in group)

    def _post(self, group: list[Item]) -> httpx.Response | str:
        """The final answer to one request, or why it could not be delivered (after retries)."""
        body = b'{"batch":[' + b",".join(item.body for item in group) + b"]}"
        headers = {"Content-Type": "application/json"}
        for attempt in range(1, self._retry.attempts + 1):
            self.outcome.requests += 1
            retry_after = None
            try:
                response = self._client.post(self._url, content=body, headers=headers, auth=self._auth)
            except httpx.TransportError as exc:
                last = f"cannot reach ingest at {self._url}: {type(exc).__name__}: {exc}"
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                code, message = _error(response)
                last = f"{response.status_code} {code}: {message}".replace("  ", " ")
                retry_after = response.headers.get("Retry-After")
            if attempt < self._retry.attempts:
                self.outcome.retries += 1
                self._sleep(self._retry.delay(attempt, retry_after, self._rand))
        return f"{last} (after {self._retry.attempts} attempts)"


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
            progress.update(task, completed=total)
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
    table = Table(
        title=f"{escape(file.name)}: {outcome.lines} events, {outcome.requests} requests, {outcome.retries} retries"
    )
    table.add_column("status")
    table.add_column("events", justify="right")
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
