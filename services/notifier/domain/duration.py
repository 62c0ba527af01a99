"""Durations as the notifier's YAML writes them: "90s", "15m", "24h", "7d", "2w", "1d12h".

A bare number is a count of seconds. Same spelling as the segmenter's rules, so one ops team
writes one language across config files.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Final

from pydantic import BeforeValidator

_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART: Final = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE: Final = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


def parse_duration(value: Any) -> timedelta:
    """Parse a non-negative duration; raises ValueError saying what is accepted."""
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("must be a duration such as '7d', '24h', '90s'")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return timedelta(seconds=value)
    text = value.strip().lower().replace(" ", "")
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"{value!r} is not a duration: use a number and a unit s/m/h/d/w, e.g. '7d', '24h'")
    return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text)))


def _positive(value: Any) -> timedelta:
    parsed = parse_duration(value)
    if parsed <= timedelta(0):
        raise ValueError("must be longer than zero")
    return parsed


Duration = Annotated[timedelta, BeforeValidator(_positive)]
"""A positive duration field of a config model."""

OptionalDelay = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A duration that may be zero (a campaign's delay)."""
