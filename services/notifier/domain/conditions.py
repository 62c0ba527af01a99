"""Audience and re-check conditions over the notifier's projection (never `eval`).

A condition is one mapping whose key says what it is:

- `all: [c, ...]` / `any: [c, ...]` / `not: c` combine conditions;
- `field: <projection field>, op, value` (see `FIELDS`; age fields take durations, "7d");
- `trait: <name>, op, value` compares a trait (`op: exists` takes no value);
- `segment: <name>` holds while the user is in that segment.

`property: <name>, op, value` (a `PropertyCondition`) filters a raw event trigger by the event's
properties. A missing value fails every op except `ne`; comparing values of different kinds
(a string with a number) is false, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, Union

from pydantic import Discriminator, Field, Tag, model_validator

from services.notifier.domain.duration import parse_duration
from shared.config import StrictModel
from shared.contracts.lifecycle import STAGES

if TYPE_CHECKING:
    from services.notifier.domain.projection import Projection

Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "exists"]
FIELDS: Final[dict[str, str]] = {
    "stage": "stage",
    "activated": "bool",
    "tier": "text",
    "locale": "text",
    "timezone": "text",
    "email": "text",
    "nps_category": "text",
    "nps_score": "number",
    "points": "number",
    "signup_age": "age",
    "activated_age": "age",
    "stage_age": "age",
}
"""Projection fields a `field:` condition may name, with their kind (deciding the valid ops)."""
_ORDER: Final = frozenset({"gt", "gte", "lt", "lte"})
_KIND_OPS: Final[dict[str, frozenset[str]]] = {
    "stage": frozenset({"eq", "ne", "in"}),
    "bool": frozenset({"eq", "ne"}),
    "age": _ORDER | {"exists"},
    "number": _ORDER | {"eq", "ne", "in", "exists"},
    "text": frozenset({"eq", "ne", "in", "exists"}),
}
TAG_PREFIX: Final = "cond:"
_NODE_KEYS: Final = ("all", "any", "not", "field", "trait", "segment")


def _normalise(data: Any, kind: str | None) -> Any:
    """Check `op`/`value` of a comparison and give `exists` its default value."""
    if not isinstance(data, dict):
        return data
    op: Any = data.get("op")
    value: Any = data.get("value")
    if kind is not None and isinstance(op, str) and op not in _KIND_OPS[kind] and op in Op.__args__:  # type: ignore[attr-defined]
        raise ValueError(f"op '{op}' does not apply here (valid: {', '.join(sorted(_KIND_OPS[kind]))})")
    if op == "exists":
        return {**data, "value": True if value is None else bool(value)}
    if op == "in" and (not isinstance(value, list) or not value):
        raise ValueError("op 'in' needs a non-empty list as value")
    if isinstance(op, str) and "value" not in data:
        raise ValueError(f"op '{op}' needs a value")
    items: list[Any] = value if op == "in" else [value]
    if kind == "age":
        return {**data, "value": parse_duration(value)}
    if kind == "stage" and any(v not in STAGES for v in items):
        raise ValueError(f"stage values must be among {', '.join(STAGES)}")
    if kind == "bool" and not isinstance(value, bool):
        raise ValueError("compares with true or false")
    if kind == "number" and any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in items):
        raise ValueError("compares with numbers")
    return data


class AllOf(StrictModel):
    all: list[Condition] = Field(min_length=1)


class AnyOf(StrictModel):
    any: list[Condition] = Field(min_length=1)


class NotOf(StrictModel):
    not_: Condition = Field(alias="not")


class FieldCondition(StrictModel):
    field: Literal[
        "stage", "activated", "tier", "locale", "timezone", "email", "nps_category", "nps_score",
        "points", "signup_age", "activated_age", "stage_age",
    ]  # fmt: skip
    op: Op
    value: Any = None

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        kind = FIELDS.get(str(data.get("field"))) if isinstance(data, dict) else None
        return _normalise(data, kind) if kind else data


class TraitCondition(StrictModel):
    trait: str = Field(min_length=1)
    op: Op
    value: Any = None

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        return _normalise(data, None)


class PropertyCondition(StrictModel):
    """`properties[name] op value` of the triggering event."""

    property: str = Field(min_length=1)
    op: Op
    value: Any = None

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        return _normalise(data, None)


class SegmentCondition(StrictModel):
    segment: str = Field(min_length=1)


def _node_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in _NODE_KEYS:
            if key in value:
                return TAG_PREFIX + key
    return None


Condition = Annotated[
    Union[  # noqa: UP007 -- Annotated tags need the explicit Union
        Annotated[AllOf, Tag("cond:all")],
        Annotated[AnyOf, Tag("cond:any")],
        Annotated[NotOf, Tag("cond:not")],
        Annotated[FieldCondition, Tag("cond:field")],
        Annotated[TraitCondition, Tag("cond:trait")],
        Annotated[SegmentCondition, Tag("cond:segment")],
    ],
    Discriminator(
        _node_kind,
        custom_error_type="unknown_condition",
        custom_error_message="a condition is a mapping with one of the keys: " + ", ".join(_NODE_KEYS),
    ),
]
AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()


def holds(cond: Condition, p: Projection, now: datetime) -> bool:
    """Whether `cond` holds for the projection `p` at `now`."""
    if isinstance(cond, AllOf):
        return all(holds(c, p, now) for c in cond.all)
    if isinstance(cond, AnyOf):
        return any(holds(c, p, now) for c in cond.any)
    if isinstance(cond, NotOf):
        return not holds(cond.not_, p, now)
    if isinstance(cond, SegmentCondition):
        return cond.segment in p.segments
    if isinstance(cond, TraitCondition):
        return compare(p.traits.get(cond.trait), cond.op, cond.value)
    return compare(_field(p, cond.field, now), cond.op, cond.value)


def properties_hold(conds: list[PropertyCondition], properties: Mapping[str, Any]) -> bool:
    """Whether every property condition holds for an event's properties."""
    return all(compare(properties.get(c.property), c.op, c.value) for c in conds)


def _field(p: Projection, name: str, now: datetime) -> Any:
    if name.endswith("_age"):
        since = {"signup_age": p.signup_at, "activated_age": p.activated_at, "stage_age": p.stage_since}[name]
        return None if since is None else now - since
    if name == "nps_category":
        return p.nps.category if p.nps else None
    if name == "nps_score":
        return p.nps.score if p.nps else None
    if name == "points":
        return p.points_balance
    return getattr(p, name)


def compare(actual: Any, op: str, value: Any) -> bool:
    """`actual op value`; a missing `actual` fails every op but `ne` (and `exists: false`)."""
    if op == "exists":
        return (actual is not None) is bool(value)
    if actual is None:
        return op == "ne"
    if op == "eq":
        return bool(actual == value)
    if op == "ne":
        return bool(actual != value)
    if op == "in":
        return actual in value
    if not _comparable(actual, value):
        return False
    if op == "gt":
        return bool(actual > value)
    if op == "gte":
        return bool(actual >= value)
    if op == "lt":
        return bool(actual < value)
    return bool(actual <= value)


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, numbers) and not isinstance(a, bool):
        return isinstance(b, numbers) and not isinstance(b, bool)
    return type(a) is type(b) and isinstance(a, (str, timedelta))
