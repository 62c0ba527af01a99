"""The rewards rules (`config/rewards.yaml`) as typed, validated, frozen models.

Load with `load_config(path)`: `version` becomes the file's content hash (stamped on every output
as `configVersion`). Every model rejects unknown fields; a bad file raises `ConfigError` naming
the file, the field path (e.g. `rules[2].caps[0].period`) and the problem. Checks that span
fields (a budget smaller than one award, a condition naming an unknown tier) report the path of
the field at fault too.

Durations are written as in every userops config: "90s", "15m", "12h", "7d", "2w".
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from services.rewards.domain.amounts import NonNegativeDecimal, PositiveDecimal, Rounding
from services.rewards.domain.conditions import STAGES, Condition
from services.rewards.domain.programs import (
    ID_PATTERN,
    BadgeRule,
    ReferralConfig,
    StreakConfig,
    TierLevel,
    TiersConfig,
    TotalConfig,
)
from services.segmenter.domain.duration import Duration, format_duration
from shared.config import StrictModel, config_version, load_yaml

Period = Literal["day", "week", "lifetime"]
Stage = Literal["new", "activated", "active", "reactivated", "at_risk", "dormant", "churned"]
assert set(Stage.__args__) == set(STAGES)  # type: ignore[attr-defined]


class CapConfig(StrictModel):
    """At most `limit` points from one rule per `period`, counted in the user's timezone:
    `day` is the local calendar date, `week` the local ISO week (Monday first)."""

    limit: int = Field(ge=1)
    period: Period


class BudgetConfig(StrictModel):
    """The most points a rule may ever award in total, across all users (a campaign's cost cap).
    `overflow`: `stop` skips an award that does not fit whole; `partial` awards what is left."""

    limit: int = Field(ge=1)
    overflow: Literal["stop", "partial"]


class ProportionalConfig(StrictModel):
    """Points = `property` x `points_per_unit` (x multipliers), rounded by the rule's `rounding`.
    An amount below `min_amount`, missing, not a finite number, or ≤ 0 earns nothing."""

    property: str = Field(min_length=1)
    points_per_unit: PositiveDecimal
    min_amount: NonNegativeDecimal = NonNegativeDecimal(0)


class MultiplierConfig(StrictModel):
    """Multiply the award by `factor` when every condition in `when` holds."""

    when: list[Condition] = Field(min_length=1)
    factor: PositiveDecimal


class PendingConfig(StrictModel):
    """Awarded points stay pending (not spendable) for `release_after`, then become available,
    unless a `reversed_by` event cancels them first."""

    release_after: Duration


class ReversalConfig(StrictModel):
    """An `event` whose property `match` equals the same property of an earlier qualifying event
    reverses that award (pending: cancelled; available: clawed back, any shortfall recorded)."""

    event: str = Field(min_length=1)
    match: str = Field(min_length=1)


class EarningRule(StrictModel):
    """One earning rule: a trigger (a tracked `event`, or a `lifecycle` stage reached), conditions,
    then fixed `points` or `proportional` points, multipliers, caps, budget and pending period."""

    id: str = Field(pattern=ID_PATTERN)
    description: str = ""
    event: str | None = Field(default=None, min_length=1)
    lifecycle: Stage | None = None
    conditions: list[Condition] = Field(default_factory=list)
    points: int | None = Field(default=None, ge=1)
    proportional: ProportionalConfig | None = None
    rounding: Rounding = "floor"
    multipliers: list[MultiplierConfig] = Field(default_factory=list)
    tier_multiplier: bool = False
    caps: list[CapConfig] = Field(default_factory=list)
    budget: BudgetConfig | None = None
    pending: PendingConfig | None = None
    reversed_by: ReversalConfig | None = None
    expires_after: Duration | None = None
    counts_for_tier: bool = True

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if (self.event is None) == (self.lifecycle is None):
            raise ValueError("a rule has exactly one trigger: event or lifecycle")
        if (self.points is None) == (self.proportional is None):
            raise ValueError("a rule awards exactly one of: points, proportional")
        if self.lifecycle is not None and (self.proportional or self.reversed_by or self.pending):
            raise ValueError(
                "a lifecycle rule has no event properties: no proportional, pending or reversed_by"
            )
        periods = [c.period for c in self.caps]
        if len(set(periods)) != len(periods):
            raise ValueError("at most one cap per period")
        return self


class ExpiryConfig(StrictModel):
    """Points expire `after` their award (None: never); `points_expiring_soon` is announced
    `warn_before` the expiry."""

    after: Duration | None = None
    warn_before: Duration | None = None

    @model_validator(mode="after")
    def _warn_inside(self) -> Self:
        if self.warn_before is not None and (self.after is None or self.warn_before >= self.after):
            raise ValueError("warn_before needs `after` and must be shorter than it")
        return self


class HoldConfig(StrictModel):
    """A redemption reserve is released automatically `ttl` after it was made."""

    ttl: Duration = timedelta(minutes=15)


class RewardsConfig(StrictModel):
    """The whole rewards rule set; `version` is stamped on every output."""

    version: str = "dev"
    default_timezone: str = "UTC"
    future_tolerance: Duration = timedelta(minutes=5)
    expiry: ExpiryConfig = ExpiryConfig()
    holds: HoldConfig = HoldConfig()
    rules: list[EarningRule] = Field(default_factory=list)
    tiers: TiersConfig | None = None
    streak: StreakConfig | None = None
    badges: list[BadgeRule] = Field(default_factory=list)
    referrals: ReferralConfig | None = None

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ValueError, KeyError, OSError):
            raise ValueError(f"unknown IANA timezone {value!r}") from None
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _cross_checked(
        cls, data: Any, handler: ModelWrapValidatorHandler[Self], info: ValidationInfo
    ) -> Self:
        if isinstance(data, dict) and info.context and "version" in info.context:
            data = {**data, "version": info.context["version"]}
        cfg = handler(data)
        problems = _cross_problems(cfg)
        if problems:
            details: list[InitErrorDetails] = [
                {
                    "type": PydanticCustomError("config", msg.replace("{", "{{").replace("}", "}}")),
                    "loc": loc,
                    "input": None,
                }
                for loc, msg in problems
            ]
            raise ValidationError.from_exception_data(cls.__name__, details)
        return cfg

    def rule(self, rule_id: str) -> EarningRule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def tier_names(self) -> list[str]:
        return [level.name for level in self.tiers.levels] if self.tiers else []


def _cross_problems(cfg: RewardsConfig) -> list[tuple[tuple[int | str, ...], str]]:
    out: list[tuple[tuple[int | str, ...], str]] = []
    seen: set[str] = set()
    tiers = set(cfg.tier_names())
    for i, rule in enumerate(cfg.rules):
        if rule.id in seen:
            out.append((("rules", i, "id"), f"rule id {rule.id!r} is used twice"))
        seen.add(rule.id)
        if rule.budget is not None and rule.points is not None and rule.budget.limit < rule.points:
            out.append(
                (
                    ("rules", i, "budget", "limit"),
                    f"budget {rule.budget.limit} is smaller than one award ({rule.points} points)",
                )
            )
        if rule.tier_multiplier and cfg.tiers is None:
            out.append((("rules", i, "tier_multiplier"), "needs a `tiers` section"))
        nested: list[tuple[tuple[int | str, ...], Condition]] = [
            (("conditions", j), c) for j, c in enumerate(rule.conditions)
        ]
        nested += [
            (("multipliers", k, "when", j), c)
            for k, m in enumerate(rule.multipliers)
            for j, c in enumerate(m.when)
        ]
        for loc, cond in nested:
            unknown = [v for v in cond.values() if cond.field == "tier" and v not in tiers]
            if unknown:
                out.append(
                    (
                        ("rules", i, *loc, "value"),
                        f"unknown tier {unknown[0]!r} (tiers: {', '.join(sorted(tiers)) or 'none'})",
                    )
                )
    badge_ids: set[str] = set()
    for i, badge in enumerate(cfg.badges):
        if badge.id in badge_ids:
            out.append((("badges", i, "id"), f"badge id {badge.id!r} is used twice"))
        badge_ids.add(badge.id)
        if badge.streak is not None and cfg.streak is None:
            out.append((("badges", i, "streak"), "a streak badge needs a `streak` section"))
    if cfg.expiry.after is not None:
        for i, rule in enumerate(cfg.rules):
            if rule.pending and rule.pending.release_after >= (rule.expires_after or cfg.expiry.after):
                out.append(
                    (
                        ("rules", i, "pending", "release_after"),
                        f"must be shorter than the expiry ({format_duration(cfg.expiry.after)})",
                    )
                )
    return out


def load_config(path: Path) -> RewardsConfig:
    """Load and validate `path`; `version` becomes the file's content hash."""
    return load_yaml(path, RewardsConfig, context={"version": config_version(path)})


__all__ = [
    "BadgeRule",
    "BudgetConfig",
    "CapConfig",
    "EarningRule",
    "ExpiryConfig",
    "HoldConfig",
    "MultiplierConfig",
    "PendingConfig",
    "ProportionalConfig",
    "ReferralConfig",
    "ReversalConfig",
    "RewardsConfig",
    "StreakConfig",
    "TierLevel",
    "TiersConfig",
    "TotalConfig",
    "load_config",
]
