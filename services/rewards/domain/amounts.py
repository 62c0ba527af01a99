"""Point arithmetic: exact decimal amounts, rounded to whole points by a stated rule.

Amounts read from event properties or config become `Decimal` (never float arithmetic: a float
property is converted through its shortest repr, so `19.99` is exactly 19.99). Non-finite,
boolean, non-numeric and out-of-range values are refused (`None`), never guessed.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation
from math import isfinite
from typing import Annotated, Any, Final, Literal

from pydantic import BeforeValidator, PlainSerializer

Rounding = Literal["floor", "ceil", "half_up", "half_even"]
_MODES: Final[dict[str, str]] = {
    "floor": ROUND_FLOOR,
    "ceil": ROUND_CEILING,
    "half_up": ROUND_HALF_UP,
    "half_even": ROUND_HALF_EVEN,
}
MAX_AMOUNT: Final = Decimal(10) ** 15
"""The largest magnitude accepted from an event property; larger is refused as a bad amount."""


def to_decimal(value: Any) -> Decimal | None:
    """`value` as an exact finite Decimal within ±MAX_AMOUNT, or None if it is not one."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int):
            out = Decimal(value)
        elif isinstance(value, float):
            if not isfinite(value):
                return None
            out = Decimal(repr(value))
        elif isinstance(value, str) and value.strip():
            out = Decimal(value.strip())
        else:
            return None
    except (InvalidOperation, ValueError):
        return None
    if not out.is_finite() or abs(out) > MAX_AMOUNT:
        return None
    return out


def round_points(value: Decimal, rounding: Rounding) -> int:
    """`value` rounded to a whole number of points by `rounding`."""
    return int(value.to_integral_value(rounding=_MODES[rounding]))


def _config_decimal(value: Any, *, positive: bool) -> Decimal:
    out = to_decimal(value)
    if out is None:
        raise ValueError("must be a finite number, e.g. 1, 1.5 or '0.25'")
    if out < 0 or (positive and out == 0):
        raise ValueError("must be greater than zero" if positive else "must not be negative")
    return out


PositiveDecimal = Annotated[
    Decimal,
    BeforeValidator(lambda v: _config_decimal(v, positive=True)),
    PlainSerializer(str, return_type=str),
]
"""A config number > 0 held exactly (`1.5` in YAML is Decimal('1.5'))."""

NonNegativeDecimal = Annotated[
    Decimal,
    BeforeValidator(lambda v: _config_decimal(v, positive=False)),
    PlainSerializer(str, return_type=str),
]
"""A config number ≥ 0 held exactly."""
