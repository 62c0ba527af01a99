"""Dead letters as operators see them: parsed from a record, filtered, shown, made replayable.

Pure functions over already-read records (no Kafka here), so the selection and the header
rewriting that `userops deadletter list|replay` rely on are unit-tested without a broker. The
header names are the runner's (shared.runtime.deadletter).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.runtime import deadletter as dl

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead-letter topic: where it came from, why, and the original record."""

    partition: int  # of the dead-letter topic
    offset: int  # of the dead-letter topic
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    consumer: str
    reason: str
    error: str
    dead_lettered_at: datetime
    key: bytes | None
    value: bytes
    headers: Headers  # all of them, the dead-letter ones included

    @property
    def original_headers(self) -> Headers:
        """The record's own headers: everything but the ones the dead-letter path added."""
        return tuple((k, v) for k, v in self.headers if k not in dl.HEADERS)


def _int_or_none(raw: str | None) -> int | None:
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def parse(
    partition: int, offset: int, timestamp_ms: int, key: bytes | None, value: bytes | None, headers: Headers
) -> DeadLetter:
    """A dead letter from one consumed record; tolerant of missing headers (older writers).

    `dead_lettered_at` comes from its header, else from the record's own timestamp.
    """
    found: dict[str, str] = {}
    for name, raw in headers:
        if name in dl.HEADERS:
            found[name] = raw.decode(errors="replace")
    at = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    if dl.DEAD_LETTERED_AT in found:
        try:
            at = _aware(datetime.fromisoformat(found[dl.DEAD_LETTERED_AT]))
        except ValueError:
            pass
    return DeadLetter(
        partition=partition,
        offset=offset,
        source_topic=found.get(dl.SOURCE_TOPIC),
        source_partition=_int_or_none(found.get(dl.SOURCE_PARTITION)),
        source_offset=_int_or_none(found.get(dl.SOURCE_OFFSET)),
        consumer=found.get(dl.CONSUMER, ""),
        reason=found.get(dl.REASON, ""),
        error=found.get(dl.ERROR, ""),
        dead_lettered_at=at,
        key=key,
        value=value or b"",
        headers=headers,
    )


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


_AGO = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_instant(text: str, now: datetime) -> datetime:
    """An ISO-8601 instant (UTC if no offset) or an age such as `90m`, `2h`, `7d` before `now`."""
    match = _AGO.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        return _aware(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise ValueError(f"'{text}' is neither an ISO-8601 instant nor an age like 2h or 7d") from None


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a command acts on; every set criterion must match."""

    consumer: str | None = None
    reason: str | None = None  # substring, case-insensitive
    error: str | None = None  # substring, case-insensitive
    topic: str | None = None  # the source topic
    since: datetime | None = None  # dead-lettered at or after
    until: datetime | None = None  # dead-lettered before

    def matches(self, letter: DeadLetter) -> bool:
        if self.consumer is not None and letter.consumer != self.consumer:
            return False
        if self.topic is not None and letter.source_topic != self.topic:
            return False
        if self.reason is not None and self.reason.lower() not in letter.reason.lower():
            return False
        if self.error is not None and self.error.lower() not in letter.error.lower():
            return False
        if self.since is not None and letter.dead_lettered_at < self.since:
            return False
        return self.until is None or letter.dead_lettered_at < self.until


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


COLUMNS = ("source", "consumer", "reason", "error", "dead_lettered_at", "key")


def table(letters: Sequence[DeadLetter], error_width: int = 60) -> list[str]:
    """Aligned text rows (header first): source topic/partition/offset, consumer, reason, ..."""
    rows = [COLUMNS]
    for x in letters:
        source = f"{x.source_topic or '?'}/{_show(x.source_partition)}/{_show(x.source_offset)}"
        key = "" if x.key is None else _shorten(x.key.decode(errors="replace"), 40)
        at = x.dead_lettered_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        rows.append((source, x.consumer, x.reason, _shorten(x.error, error_width), at, key))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _show(n: int | None) -> str:
    return "?" if n is None else str(n)
