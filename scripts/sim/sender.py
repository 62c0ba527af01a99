"""Where a simulated stream goes: through ingest with the Segment SDK, or to an NDJSON file.

`SdkSender` is the official Segment Python SDK (`segment-analytics-python`) pointed at ingest,
as a product's backend would use it: it batches events (at most 100 per `POST /v1/batch`),
authenticates with the write key, and retries 429 and 5xx answers with backoff (honouring
`Retry-After`); a 400/401/413 is final and reported through its `on_error` hook. The sender
keeps the SDK's queue below its limit (the SDK drops what does not fit) and counts what the
SDK's upload threads have taken off it, so a progress bar can follow.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson

from shared.events import parse_ts

QUEUE_LIMIT: Final = 10_000
"""The SDK's queue size; the sender waits while it is over `HIGH_WATER`."""
HIGH_WATER: Final = 8_000
UPLOAD_SIZE: Final = 100
"""Events per `POST /v1/batch` (the SDK's own maximum)."""


@dataclass(slots=True)
class SendReport:
    """What a send did: events handed over, events refused or dropped, the first error seen."""

    events: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class SdkSender:
    """Posts wire events through the Segment SDK to `url` with `write_key`."""

    def __init__(self, url: str, write_key: str, *, threads: int = 2, max_retries: int = 10) -> None:
        from segment.analytics import Client

        self._lock = threading.Lock()
        self.report = SendReport()
        self.client = Client(
            write_key,
            host=url.rstrip("/"),
            max_queue_size=QUEUE_LIMIT,
            upload_size=UPLOAD_SIZE,
            thread=threads,
            max_retries=max_retries,
            max_total_backoff_duration=120,
            on_error=self._on_error,
        )

    def _on_error(self, error: Exception, items: list[dict[str, Any]]) -> None:
        with self._lock:
            self.report.failed += len(items)
            if len(self.report.errors) < 5:
                self.report.errors.append(str(error))

    def send(self, events: Iterable[dict[str, Any]], advance: Callable[[int], None]) -> SendReport:
        """Hand every event to the SDK, then wait until it has posted them all (or given up).
        `advance(n)` is called as the SDK's upload threads take events off its queue."""
        queue = self.client.queue
        handed = taken = 0

        def progress() -> None:
            nonlocal taken
            now_taken = handed - queue.qsize()
            if now_taken > taken:
                advance(now_taken - taken)
                taken = now_taken

        for event in events:
            while queue.qsize() >= HIGH_WATER:
                progress()
                time.sleep(0.02)  # the SDK's threads drain the queue; nothing to wait on but it
            ok, _ = self._enqueue(event)
            if not ok:
                self._on_error(RuntimeError("the SDK's queue was full; event dropped"), [event])
            handed += 1
            if handed % 500 == 0:
                progress()
        while queue.unfinished_tasks:
            progress()
            time.sleep(0.05)
        progress()
        self.client.join()
        self.report.events = handed
        return self.report

    def _enqueue(self, e: dict[str, Any]) -> tuple[bool, Any]:
        common: dict[str, Any] = {
            "context": dict(e.get("context") or {}),
            "timestamp": _instant(e["timestamp"]),
            "anonymous_id": e.get("anonymousId"),
            "message_id": e["messageId"],
        }
        kind, user = e["type"], e.get("userId")
        if kind == "track":
            return self.client.track(user, e["event"], e.get("properties") or {}, **common)  # type: ignore[no-any-return]
        if kind == "identify":
            return self.client.identify(user, e.get("traits") or {}, **common)  # type: ignore[no-any-return]
        if kind in ("page", "screen"):
            call = self.client.page if kind == "page" else self.client.screen
            return call(user_id=user, name=e.get("name"), properties=e.get("properties") or {}, **common)  # type: ignore[no-any-return]
        raise ValueError(f"the simulator does not send {kind!r} events")


def _instant(value: str) -> datetime:
    return parse_ts(value, "timestamp")


def write_ndjson(path: Path, events: Iterable[dict[str, Any]], advance: Callable[[int], None]) -> int:
    """Write one wire event per line (gzip if `path` ends in .gz); returns how many."""
    n = 0
    with gzip.open(path, "wb") if path.suffix == ".gz" else path.open("wb") as out:
        for event in events:
            out.write(orjson.dumps(event) + b"\n")
            n += 1
            if n % 1000 == 0:
                advance(1000)
    advance(n % 1000)
    return n
