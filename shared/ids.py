"""The one place input ids and output ids are made (DESIGN.md §3.1-3.2).

An *input id* names one input exactly once across the whole system:
- a message: its source stream (the topic's contract name, e.g. `userops.events.v1`), its
  partition key (the user id) and its `messageId` — so two users whose apps both send
  `messageId: "signup-1"` never share an id;
- a timer firing: its kind, key and the exact instant it fell due.

The contract name is used rather than the physical topic, so a mirrored or renamed topic, a test
topic, and an offline replay of recorded events all give the ids the live service gave.

Every output (an outbox event, a history row, a ledger entry, a job) derived from an input by a
rule has the id `output_id(input_id, rule)`: deterministic, so a redelivery or a replay produces
the same id and downstream dedupe works. The dedupe table stores `dedupe_hash(input_id)`.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Final

_SEP: Final = "\x1f"
OUTPUT_NAMESPACE: Final = uuid.UUID("16940c2b-b293-5355-8881-c15e9c63843a")
"""uuid5(NAMESPACE_URL, "urn:userops:segmenter"): the namespace of every output id."""


def input_id(source: str, partition_key: str, message_id: str) -> str:
    """The id of a message: source stream contract name + partition key + messageId.

    The key is length-prefixed, so no choice of key and messageId (either may contain the
    separator) can spell another pair's id.
    """
    return f"{source}{_SEP}{len(partition_key)}:{partition_key}{_SEP}{message_id}"


def timer_input_id(kind: str, key: str, due_at: datetime) -> str:
    """The id of one timer firing: its kind, its key and the exact instant it fell due."""
    return f"timer{_SEP}{kind}{_SEP}{key}{_SEP}{due_at.astimezone(UTC).isoformat(timespec='microseconds')}"


def output_id(input_id: str, rule: str) -> str:
    """The deterministic id of what `rule` derived from the input `input_id`."""
    return str(uuid.uuid5(OUTPUT_NAMESPACE, f"{input_id}{_SEP}{rule}"))


def dedupe_hash(input_id: str) -> bytes:
    """The fixed-size (32-byte) form in which a consumer records that it processed an input."""
    return hashlib.sha256(input_id.encode("utf-8", "surrogatepass")).digest()
