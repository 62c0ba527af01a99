"""Durations as the segmenter's YAML writes them: "90s", "15m", "12h", "7d", "2w", "1d12h".

A bare number is a count of seconds. Parsing is strict: anything else is a `ValueError` whose
message says what is accepted, so a config error names the field and the problem.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, PlainSerializer

_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART: Final = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE: Final = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
DAY: Final = timedelta(days=1)


def parse_duration(value: Any) -> timedelta:
    """Parse a duration; raises ValueError (with an example of valid input) on anything else."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("must be a duration such as '7d', '12h', '90s'")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError("must be a duration such as '7d', '12h', '90s'")
    text = value.strip().lower().replace(" ", "")
    if not _WHOLE.fullmatch(text):
        raise ValueError(
            f"{value!r} is not a duration: use a number and a unit s/m/h/d/w, e.g. '7d', '12h', "
            "'90s', '1d12h'"
        )
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """An exact spelling that `parse_duration` reads back: "7d", "12h", "99d23h", "1m30s"."""
    total_us = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if total_us < 0 else ""
    seconds, micros = divmod(abs(total_us), 1_000_000)
    parts = []
    for unit in ("d", "h", "m"):
        n, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if n:
            parts.append(f"{n}{unit}")
    if micros:
        parts.append(f"{seconds}.{micros:06d}".rstrip("0") + "s")
    elif seconds or not parts:
        parts.append(f"{seconds}s")
    return sign + "".join(parts)


def _positive(value: Any) -> timedelta:
    parsed = parse_duration(value)
    if parsed <= timedelta(0):
        raise ValueError("must be longer than zero")
    return parsed


def _whole_days(value: Any) -> timedelta:
    parsed = _positive(value)
    if parsed % DAY:
        raise ValueError(
            "must be a whole number of days (rolling event counts are kept per UTC day), e.g. '7d'"
        )
    return parsed


_SERIALIZE = PlainSerializer(format_duration, return_type=str)

Duration = Annotated[timedelta, BeforeValidator(_positive), _SERIALIZE]
"""A positive duration field of a config model."""

DayWindow = Annotated[timedelta, BeforeValidator(_whole_days), _SERIALIZE]
"""A positive whole number of days: the length of a rolling window over daily counters."""
