"""Segment condition trees as typed nodes, parsed from YAML by a discriminated union (never `eval`).

A condition is one mapping whose key says what it is:

- `all: [c, ...]` / `any: [c, ...]` / `not: c` combine conditions;
- `field: <profile field>, op, value` compares a profile fact (see `PROFILE_FIELDS`);
- `trait: <name>, op, value` compares a trait (`op: exists` takes no value);
- `event: <name>, count: N, op: gte, within: 7d` counts the event on the last N UTC days;
- `not_done: <name>, within: 14d` holds when the event was not done in that long (or never).

Evaluation lives in `segments.py`; this module only describes and validates.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, Union

from pydantic import Discriminator, Field, Tag, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from services.segmenter.domain.duration import DayWindow, Duration, parse_duration
from shared.config import StrictModel

STAGES: Final = ("new", "activated", "active", "reactivated", "at_risk", "dormant", "churned")

CompareOp = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "exists", "contains"]
CountOp = Literal["eq", "ne", "gt", "gte", "lt", "lte"]

_ORDER_OPS: Final = frozenset({"gt", "gte", "lt", "lte"})
_KIND_OPS: Final[dict[str, frozenset[str]]] = {
    "stage": frozenset({"eq", "ne", "in"}),
    "bool": frozenset({"eq", "ne"}),
    "age": _ORDER_OPS,
    "number": _ORDER_OPS | {"eq", "ne", "in", "exists"},
    "text": frozenset({"eq", "ne", "in", "exists", "contains"}),
}
PROFILE_FIELDS: Final[dict[str, str]] = {
    "stage": "stage",
    "activated": "bool",
    "core": "bool",
    "first_seen_age": "age",
    "signup_age": "age",
    "idle": "age",
    "revenue": "number",
    "orders": "number",
    "r": "number",
    "f": "number",
    "m": "number",
    "rfm_segment": "text",
    "timezone": "text",
}
"""Profile fields a `field:` condition may name, with their kind (which decides the valid ops)."""

_TAG_PREFIX: Final = "cond:"
_NODE_KEYS: Final = ("all", "any", "not", "field", "trait", "event", "not_done")


class AllOf(StrictModel):
    all: list[Condition] = Field(min_length=1)


class AnyOf(StrictModel):
    any: list[Condition] = Field(min_length=1)


class NotOf(StrictModel):
    not_: Condition = Field(alias="not")


class FieldCondition(StrictModel):
    """`field op value`; age fields take durations ("7d"), `in` takes a list."""

    field: Literal[
        "stage", "activated", "core", "first_seen_age", "signup_age", "idle",
        "revenue", "orders", "r", "f", "m", "rfm_segment", "timezone",
    ]  # fmt: skip
    op: CompareOp
    value: Any = None

    @model_validator(mode="before")
    @classmethod
    def _check_value(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        kind = PROFILE_FIELDS.get(data.get("field"))  # type: ignore[arg-type]
        op = data.get("op")
        if kind is None or not isinstance(op, str):
            return data  # the field validators name the problem
        if op not in _KIND_OPS[kind] and op in CompareOp.__args__:  # type: ignore[attr-defined]
            raise ValueError(
                f"op '{op}' does not apply to field '{data['field']}' "
                f"(valid: {', '.join(sorted(_KIND_OPS[kind]))})"
            )
        value = data.get("value")
        if op == "exists":
            return {**data, "value": True if value is None else bool(value)}
        if op == "in":
            if not isinstance(value, list) or not value:
                raise ValueError("op 'in' needs a non-empty list as value")
            items = value
        else:
            items = [value]
        if kind == "age":
            return {**data, "value": parse_duration(value)}
        if kind == "stage" and any(v not in STAGES for v in items):
            raise ValueError(f"stage values must be among {', '.join(STAGES)}")
        if kind == "bool" and not isinstance(value, bool):
            raise ValueError(f"field '{data['field']}' compares with true or false")
        if kind == "number" and any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in items):
            raise ValueError(f"field '{data['field']}' compares with numbers")
        return data


class TraitCondition(StrictModel):
    """`traits[name] op value`; a missing trait fails every op except `ne`."""

    trait: str = Field(min_length=1)
    op: CompareOp
    value: Any = None

    @model_validator(mode="before")
    @classmethod
    def _check_value(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        op, value = data.get("op"), data.get("value")
        if op == "exists":
            return {**data, "value": True if value is None else bool(value)}
        if op == "in" and (not isinstance(value, list) or not value):
            raise ValueError("op 'in' needs a non-empty list as value")
        if op in CompareOp.__args__ and "value" not in data:  # type: ignore[attr-defined]
            raise ValueError(f"op '{op}' needs a value")
        return data


class EventCountCondition(StrictModel):
    """How many times `event` was tracked on the last `within` UTC days (today included)."""

    event: str = Field(min_length=1)
    count: int = Field(ge=0)
    op: CountOp = "gte"
    within: DayWindow


class NotDoneCondition(StrictModel):
    """True when `not_done` was never tracked, or last tracked at least `within` ago."""

    not_done: str = Field(min_length=1)
    within: Duration


def _node_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in _NODE_KEYS:
            if key in value:
                return _TAG_PREFIX + key
    return None


Condition = Annotated[
    Union[  # noqa: UP007 -- Annotated tags need the explicit Union
        Annotated[AllOf, Tag("cond:all")],
        Annotated[AnyOf, Tag("cond:any")],
        Annotated[NotOf, Tag("cond:not")],
        Annotated[FieldCondition, Tag("cond:field")],
        Annotated[TraitCondition, Tag("cond:trait")],
        Annotated[EventCountCondition, Tag("cond:event")],
        Annotated[NotDoneCondition, Tag("cond:not_done")],
    ],
    Discriminator(
        _node_kind,
        custom_error_type="unknown_condition",
        custom_error_message=("a condition is a mapping with one of the keys: " + ", ".join(_NODE_KEYS)),
    ),
]

AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()


def without_condition_tags(exc: ValidationError) -> ValidationError:
    """The same errors with the union's internal tags dropped from each location.

    So a bad operator reads `segments[2].rule.all[1].op`, the path a user sees in the YAML.
    """
    details: list[InitErrorDetails] = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(_TAG_PREFIX)))
        message = err["msg"].replace("{", "{{").replace("}", "}}")
        details.append({"type": PydanticCustomError(err["type"], message), "loc": loc, "input": err["input"]})
    return ValidationError.from_exception_data(exc.title, details)


def referenced(node: Condition) -> list[Condition]:
    """Every node of a tree, depth first (the root included)."""
    out: list[Condition] = [node]
    if isinstance(node, AllOf):
        for child in node.all:
            out += referenced(child)
    elif isinstance(node, AnyOf):
        for child in node.any:
            out += referenced(child)
    elif isinstance(node, NotOf):
        out += referenced(node.not_)
    return out
