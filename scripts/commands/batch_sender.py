"""Events of an NDJSON file posted to ingest's `/v1/batch`: what became of each line.

`read_items` turns lines into request items (a line that is not a JSON object is rejected with
its number; an event without `messageId` gets one, so a retry of a request that partly landed is
deduplicated by the consumers); `chunks` groups them into requests within ingest's limits;
`Sender` posts a chunk, retries 429, 5xx and connection errors with jittered backoff (honouring
`Retry-After`), and, when ingest refuses a request naming one event (`batch[3].userId: ...`),
records that line as rejected with ingest's reason and sends the rest again. No I/O beyond the
injected `httpx.Client`, so all of it is tested against a stand-in transport.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Final

import httpx
import orjson

WRAPPER_BYTES: Final = len(b'{"batch":[]}')
RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
ITEM: Final = re.compile(r"^batch\[(\d+)\](?:\.|: ?)?")


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

    lines: int = 0  # non-blank lines read
    malformed: int = 0  # of them, lines that are not a JSON object (also in `rejected`)
    accepted: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    requests: int = 0
    retries: int = 0

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.failed

    @property
    def events(self) -> int:
        """Lines that are events (JSON objects), sent or rejected by ingest."""
        return self.lines - self.malformed


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
            outcome.malformed += 1
            outcome.rejected.append((number, f"malformed JSON: {exc}"))
            continue
        if not isinstance(event, dict):
            outcome.malformed += 1
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
