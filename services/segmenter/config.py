"""The segmenter's rules (`config/segmenter.yaml`) as typed, validated, frozen models.

Load with `load_config(path)` (or `shared.config.load_yaml(path, SegmenterConfig)`, which leaves
`version` at "dev" unless the context holds one). Every model rejects unknown fields; a bad file raises `ConfigError` naming the
file, the path of the field (e.g. `segments[2].rule.all[1].op`) and the problem. Defaults follow
DESIGN.md §4 and REFERENCE.md, so `SegmenterConfig()` is the documented default configuration.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from services.segmenter.domain.conditions import (
    AllOf,
    AnyOf,
    Condition,
    EventCountCondition,
    FieldCondition,
    NotDoneCondition,
    NotOf,
    referenced,
    without_condition_tags,
)
from services.segmenter.domain.duration import DAY, DayWindow, Duration
from services.segmenter.domain.predicates import Predicate, compile_condition
from shared.config import StrictModel, config_version, load_yaml

SegmentName = str
_NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
EventType = Literal["track", "page", "screen", "identify", "group", "alias"]
_ACTIVITY_TYPES: tuple[EventType, ...] = ("track", "page", "screen")


class LifecycleConfig(StrictModel):
    """Stage thresholds (DESIGN §4); idle = now - last activity."""

    at_risk_after: Duration = timedelta(days=7)
    dormant_after: Duration = timedelta(days=30)
    churned_after: Duration = timedelta(days=90)
    reactivation_gap: Duration = timedelta(days=30)
    reactivated_hold: Duration = timedelta(days=7)
    new_window: Duration = timedelta(days=7)
    activated_window: Duration = timedelta(days=7)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.at_risk_after < self.dormant_after < self.churned_after:
            raise ValueError("thresholds must satisfy at_risk_after < dormant_after < churned_after")
        return self


class ActivationRule(StrictModel):
    """`count` tracked `event`s, the last of them less than `within` after signup if set."""

    event: str = Field(min_length=1)
    count: int = Field(default=1, ge=1, le=1000)
    within: Duration | None = None


class ActivationConfig(StrictModel):
    """A user activates when any rule holds; an empty list means nobody ever activates."""

    any_of: list[ActivationRule] = Field(default_factory=lambda: [ActivationRule(event="Order Completed")])


class ActivityConfig(StrictModel):
    """Which events count as activity: `types`, minus passive names and flagged events."""

    types: list[EventType] = Field(default_factory=lambda: list(_ACTIVITY_TYPES))
    passive_events: list[str] = Field(default_factory=list)
    passive_property: str | None = "passive"
    keep_days: int = Field(default=120, ge=1, le=3660)


class RevenueConfig(StrictModel):
    """Track events that are orders, and the numeric property holding their revenue."""

    events: list[str] = Field(default_factory=lambda: ["Order Completed"])
    property: str = "revenue"


class SignupConfig(StrictModel):
    """Signup time: the earliest `event` if set and seen, else the `trait` timestamp if set and
    valid, else the first time the user was seen."""

    event: str | None = None
    trait: str | None = None


class NamedRule(StrictModel):
    name: SegmentName = Field(pattern=_NAME_PATTERN)
    description: str = ""
    rule: Condition


def _rfm(name: str, rule: dict[str, Any]) -> NamedRule:
    return NamedRule.model_validate({"name": name, "rule": rule})


def _ge(f: str, v: int) -> dict[str, Any]:
    return {"field": f, "op": "gte", "value": v}


def _le(f: str, v: int) -> dict[str, Any]:
    return {"field": f, "op": "lte", "value": v}


def _default_rfm_segments() -> list[NamedRule]:
    return [
        _rfm("champions", {"all": [_ge("r", 4), _ge("f", 4), _ge("m", 4)]}),
        _rfm("loyal", {"all": [_ge("r", 3), _ge("f", 4)]}),
        _rfm("high_value_at_risk", {"all": [_le("r", 2), {"any": [_ge("f", 4), _ge("m", 4)]}]}),
        _rfm("new_customers", {"all": [_ge("r", 4), _le("f", 1)]}),
        _rfm("hibernating", {"all": [_le("r", 2), _le("f", 2), _le("m", 2)]}),
    ]


def _ascending(values: list[Any], what: str) -> None:
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(f"{what} breakpoints must be strictly ascending")


class RfmConfig(StrictModel):
    """RFM scores 1-5 from four ascending breakpoints each, for users with at least one order.

    Recency: less than recency[0] since the last order scores 5, ..., at least recency[3] scores 1.
    Frequency (orders) and monetary (revenue) over `window`: below [0] scores 1, at least [3]
    scores 5. Hysteresis: a better score is taken at once; a worse one only once the value is past
    the breakpoint by `hysteresis` (a fraction of it). `segments`: first match wins.
    """

    enabled: bool = True
    window: DayWindow = timedelta(days=365)
    recency: list[Duration] = Field(
        default_factory=lambda: [timedelta(days=d) for d in (14, 30, 90, 180)],
        min_length=4,
        max_length=4,
    )
    frequency: list[float] = Field(default_factory=lambda: [2.0, 3.0, 5.0, 10.0], min_length=4, max_length=4)
    monetary: list[float] = Field(
        default_factory=lambda: [50.0, 150.0, 500.0, 1500.0], min_length=4, max_length=4
    )
    hysteresis: float = Field(default=0.1, ge=0, lt=1)
    segments: list[NamedRule] = Field(default_factory=_default_rfm_segments)

    @model_validator(mode="after")
    def _breakpoints(self) -> Self:
        _ascending(self.recency, "recency")
        _ascending(self.frequency, "frequency")
        _ascending(self.monetary, "monetary")
        return self


class CoreConfig(StrictModel):
    """Core users: active on ≥ `enter_days` of the last `window` UTC days; they stay while
    active on ≥ `stay_days` (lower, so users at the boundary do not flap)."""

    enabled: bool = True
    name: SegmentName = Field(default="core", pattern=_NAME_PATTERN)
    window: DayWindow = timedelta(days=28)
    enter_days: int = Field(default=12, ge=1)
    stay_days: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _thresholds(self) -> Self:
        if self.stay_days > self.enter_days:
            raise ValueError("stay_days must not exceed enter_days")
        if self.enter_days > self.window // DAY:
            raise ValueError("enter_days must fit in the window")
        return self


@dataclass(frozen=True, slots=True)
class Derived:
    """Lookups and compiled rules computed once from the config, so per-event work is cheap."""

    activity_types: frozenset[str]
    passive_events: frozenset[str]
    revenue_events: frozenset[str]
    activation_keep: dict[str, int]
    """Activation event name -> how many of its earliest timestamps the rules can look at."""
    counted_days: dict[str, int]
    """Event name -> the longest rolling window (days) any condition counts it over."""
    counted_windows: tuple[tuple[str, int], ...]
    """Every distinct (event, window days) a condition counts."""
    not_done: tuple[tuple[str, timedelta], ...]
    """Every distinct (event, within) of a `not_done` condition."""
    not_done_events: frozenset[str]
    age_thresholds: tuple[tuple[str, timedelta], ...]
    """(field, duration) of every age comparison, for the instants segments may change."""
    segment_rules: tuple[tuple[str, Predicate], ...]
    rfm_rules: tuple[tuple[str, Predicate], ...]
    rfm_rules_scores_only: bool
    """Whether the RFM segment rules look at nothing but r, f and m."""
    recency_lenient: tuple[timedelta, ...]
    """RFM breakpoints moved by the hysteresis margin: a score drops only past these."""
    frequency_lenient: tuple[float, ...]
    monetary_lenient: tuple[float, ...]


class SegmenterConfig(StrictModel):
    """The whole segmenter rule set; `version` is stamped on every output event.

    Build it by validation (`load_config`, `model_validate`). `derived` is computed once per
    instance and a `model_copy` keeps the original's, so copy with `update` only for `version`
    (which `derived` does not read).
    """

    version: str = "dev"
    future_tolerance: Duration = timedelta(minutes=5)
    lifecycle: LifecycleConfig = LifecycleConfig()
    activation: ActivationConfig = ActivationConfig()
    activity: ActivityConfig = ActivityConfig()
    revenue: RevenueConfig = RevenueConfig()
    signup: SignupConfig = SignupConfig()
    rfm: RfmConfig = RfmConfig()
    core: CoreConfig = CoreConfig()
    segments: list[NamedRule] = Field(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _readable_paths(
        cls, data: Any, handler: ModelWrapValidatorHandler[Self], info: ValidationInfo
    ) -> Self:
        if isinstance(data, dict) and info.context and "version" in info.context:
            data = {**data, "version": info.context["version"]}
        try:
            return handler(data)
        except ValidationError as exc:
            raise without_condition_tags(exc) from None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [s.name for s in self.segments]
        if self.rfm.enabled:
            names += [s.name for s in self.rfm.segments]
        if self.core.enabled:
            names.append(self.core.name)
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"segment names must be unique; repeated: {', '.join(duplicates)}")
        if self.core.enabled and self.activity.keep_days < self.core.window // DAY:
            raise ValueError("activity.keep_days must cover core.window")
        return self

    @cached_property
    def derived(self) -> Derived:
        return _derive(self)


def _derive(cfg: SegmenterConfig) -> Derived:
    nodes = [n for s in (*cfg.segments, *cfg.rfm.segments) for n in referenced(s.rule)]
    windows = sorted({(n.event, n.within // DAY) for n in nodes if isinstance(n, EventCountCondition)})
    counted: dict[str, int] = {}
    for event, days in windows:
        counted[event] = max(days, counted.get(event, 0))
    not_done = sorted({(n.not_done, n.within) for n in nodes if isinstance(n, NotDoneCondition)})
    activation: dict[str, int] = {}
    for rule in cfg.activation.any_of:
        activation[rule.event] = max(rule.count, activation.get(rule.event, 0))
    h = cfg.rfm.hysteresis
    return Derived(
        activity_types=frozenset(cfg.activity.types),
        passive_events=frozenset(cfg.activity.passive_events),
        revenue_events=frozenset(cfg.revenue.events),
        activation_keep=activation,
        counted_days=counted,
        counted_windows=tuple(windows),
        not_done=tuple(not_done),
        not_done_events=frozenset(event for event, _ in not_done),
        age_thresholds=tuple(
            (n.field, n.value)
            for n in nodes
            if isinstance(n, FieldCondition) and isinstance(n.value, timedelta)
        ),
        segment_rules=tuple((s.name, compile_condition(s.rule)) for s in cfg.segments),
        rfm_rules=tuple((s.name, compile_condition(s.rule)) for s in cfg.rfm.segments),
        rfm_rules_scores_only=all(
            isinstance(n, (AllOf, AnyOf, NotOf))
            or (isinstance(n, FieldCondition) and n.field in ("r", "f", "m"))
            for s in cfg.rfm.segments
            for n in referenced(s.rule)
        ),
        recency_lenient=tuple(b * (1 + h) for b in cfg.rfm.recency),
        frequency_lenient=tuple(b * (1 - h) for b in cfg.rfm.frequency),
        monetary_lenient=tuple(b * (1 - h) for b in cfg.rfm.monetary),
    )


def load_config(path: Path) -> SegmenterConfig:
    """Load and validate `path`; `version` becomes the file's content hash."""
    return load_yaml(path, SegmenterConfig, context={"version": config_version(path)})


__all__ = [
    "ActivationConfig",
    "ActivationRule",
    "ActivityConfig",
    "AllOf",
    "AnyOf",
    "CoreConfig",
    "LifecycleConfig",
    "NamedRule",
    "RevenueConfig",
    "RfmConfig",
    "SegmenterConfig",
    "SignupConfig",
    "load_config",
]
