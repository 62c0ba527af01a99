"""Garbage-collector settings for a process that works in large batches.

A consumer batch allocates hundreds of thousands of short-lived containers (decoded events,
user states, result rows). With CPython's default thresholds (700, 10, 10) that starts hundreds
of collections per batch, and every older-generation pass re-scans each long-lived object of the
process (modules, the SQL and Kafka clients): about a third of the segmenter's CPU in its
benchmark. Reference cycles are still collected, only in larger, rarer passes.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
"""Net container allocations before a young collection (CPython's default is 700)."""


def tune_for_batches(young: int = YOUNG_THRESHOLD) -> None:
    """Freeze what is alive now (start-up state, out of every later scan) and raise the thresholds.

    Call once, from the composition root, after start-up and before the work begins.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, 50, 50)
