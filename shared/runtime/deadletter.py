"""The dead-letter record format (DESIGN.md §1, §3.3), shared by the runner that writes it and
the `userops deadletter` commands that list and replay it.

A dead-lettered record keeps the original key, value and headers, and gains the headers below.
Replaying strips them and republishes to the source topic with the original key and headers.
"""

from __future__ import annotations

from typing import Final

SOURCE_TOPIC: Final = "source_topic"
SOURCE_PARTITION: Final = "source_partition"
SOURCE_OFFSET: Final = "source_offset"
CONSUMER: Final = "consumer"
REASON: Final = "reason"
ERROR: Final = "error"
DEAD_LETTERED_AT: Final = "dead_lettered_at"  # ISO-8601 UTC

HEADERS: Final = frozenset(
    {SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET, CONSUMER, REASON, ERROR, DEAD_LETTERED_AT}
)
"""The headers the runner adds; everything else on a dead letter is the original record's."""
