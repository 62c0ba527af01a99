"""Conditions of an earning rule or multiplier: one comparison on a property, trait or profile fact.

A condition is one mapping naming exactly one subject:
- `property: <name>` — a property of the event (a dotted path reaches into objects: `cart.total`);
- `trait: <name>` — a trait of the user (the latest seen on any event);
- `field: stage | tier | segment` — the user's lifecycle stage, rewards tier, or segment
  membership (`field: segment, op: eq, value: core` holds while the user is in `core`);
with `op` (default `eq`) and `value`. Ordering ops compare numbers exactly (as Decimal) and never
match a non-number. A missing subject fails every op except `ne`. Never `eval`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Self

from pydantic import Field, model_validator

from services.rewards.domain.amounts import to_decimal
from shared.config import StrictModel

STAGES: Final = ("new", "activated", "active", "reactivated", "at_risk", "dormant", "churned")
"""Lifecycle stages as the segmenter publishes them (DESIGN §4)."""

Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "exists"]
_ORDER_OPS: Final = frozenset({"gt", "gte", "lt", "lte"})
_MISSING: Final = object()


class Condition(StrictModel):
    """`subject op value`; exactly one of `property`, `trait`, `field` names the subject."""

    property: str | None = Field(default=None, min_length=1)
    trait: str | None = Field(default=None, min_length=1)
    field: Literal["stage", "tier", "segment"] | None = None
    op: Op = "eq"
    value: Any = None

    @model_validator(mode="after")
    def _well_formed(self) -> Self:
        subjects = [s for s in (self.property, self.trait, self.field) if s is not None]
        if len(subjects) != 1:
            raise ValueError("a condition names exactly one of: property, trait, field")
        if self.op == "in" and (not isinstance(self.value, list) or not self.value):
            raise ValueError("op 'in' needs a non-empty list as value")
        if self.op not in ("exists", "in") and self.value is None:
            raise ValueError(f"op '{self.op}' needs a value")
        if self.op in _ORDER_OPS and to_decimal(self.value) is None:
            raise ValueError(f"op '{self.op}' compares with a number")
        if self.field is not None and self.op not in ("eq", "ne", "in"):
            raise ValueError(f"field '{self.field}' takes op eq, ne or in")
        if self.field == "stage":
            values = self.value if isinstance(self.value, list) else [self.value]
            if any(v not in STAGES for v in values):
                raise ValueError(f"stage values must be among {', '.join(STAGES)}")
        return self

    def values(self) -> list[Any]:
        """The compared values (`in` lists several)."""
        return list(self.value) if isinstance(self.value, list) else [self.value]


@dataclass(frozen=True, slots=True)
class Facts:
    """What a condition can look at for one input."""

    properties: Mapping[str, Any]
    traits: Mapping[str, Any]
    stage: str | None
    tier: str | None
    segments: Collection[str]


def holds(cond: Condition, facts: Facts) -> bool:
    """Whether `cond` holds for `facts`."""
    if cond.field == "segment":
        member = any(v in facts.segments for v in cond.values())
        return not member if cond.op == "ne" else member
    if cond.field is not None:
        actual: Any = facts.stage if cond.field == "stage" else facts.tier
        actual = _MISSING if actual is None else actual
    elif cond.property is not None:
        actual = _lookup(facts.properties, cond.property)
    else:
        actual = facts.traits.get(cond.trait or "", _MISSING)
    return _compare(cond, actual)


def all_hold(conditions: list[Condition], facts: Facts) -> bool:
    return all(holds(c, facts) for c in conditions)


def _lookup(data: Mapping[str, Any], path: str) -> Any:
    if path in data:
        return data[path]
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _compare(cond: Condition, actual: Any) -> bool:
    if cond.op == "exists":
        present = actual is not _MISSING and actual is not None
        return present == (cond.value is None or bool(cond.value))
    if actual is _MISSING:
        return cond.op == "ne"
    if cond.op in _ORDER_OPS:
        left, right = to_decimal(actual), to_decimal(cond.value)
        if left is None or right is None:
            return False
        return {"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[cond.op]
    equal = any(_equal(actual, v) for v in cond.values())
    return not equal if cond.op == "ne" else equal


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    left, right = to_decimal(actual), to_decimal(expected)
    if left is not None and right is not None and not isinstance(actual, str):
        return left == right
    return bool(actual == expected)
