"""A campaign as the notifier's YAML declares it (`campaigns[i]` of `config/notifier.yaml`).

trigger → audience → (delay) → re-check → suppression, quiet hours, caps → template → send.
A campaign with a single `template` is shorthand for one variant named `default` of weight 1.
`reentry: once` (the default) lets a user enter a campaign once ever; `reentry: 30d` at most once
per 30 days. Variant weights sum to 1; `holdout` is a share in [0, 1).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Final, Self

from pydantic import BeforeValidator, Field, field_validator, model_validator

from services.notifier.domain.caps import FrequencyCap
from services.notifier.domain.conditions import Condition
from services.notifier.domain.duration import Duration, OptionalDelay, parse_duration
from services.notifier.domain.templates import TemplateSpec, channel_problem
from services.notifier.domain.triggers import Goal, Trigger
from shared.config import StrictModel
from shared.contracts.deliveries import Channel

_NAME: Final = r"^[a-z0-9_][a-z0-9_.-]{0,63}$"
WEIGHT_TOLERANCE: Final = 1e-9


def _reentry(value: Any) -> timedelta | None:
    if value is None or value == "once":
        return None
    parsed = parse_duration(value)
    if parsed <= timedelta(0):
        raise ValueError("reentry is 'once' or a positive duration such as '30d'")
    return parsed


Reentry = Annotated[timedelta | None, BeforeValidator(_reentry)]


class Variant(StrictModel):
    name: str = Field(pattern=_NAME)
    weight: float = Field(gt=0, le=1)
    template: TemplateSpec


class Campaign(StrictModel):
    """One campaign: trigger → audience → (delay) → re-check → caps, quiet hours → send."""

    name: str = Field(pattern=_NAME)
    description: str = ""
    enabled: bool = True
    topic: str = Field(pattern=_NAME)
    trigger: Trigger
    audience: Condition | None = None
    delay: OptionalDelay = timedelta(0)
    recheck: Condition | None = None
    """Evaluated at send time, after the delay (the audience is re-checked too)."""
    channel: Channel
    endpoint: str | None = None
    quiet_hours: bool = True
    variants: list[Variant] = Field(min_length=1, max_length=10)
    holdout: float = Field(default=0.0, ge=0, lt=1)
    reentry: Reentry = None
    caps: list[FrequencyCap] = Field(default_factory=list)
    global_caps: bool = True
    """False: the campaign's sends neither obey nor count towards the global caps."""
    goal: Goal | None = None
    expire_after: Duration = timedelta(days=2)
    """A send still not out this long after it fell due is cancelled as stale."""

    @model_validator(mode="before")
    @classmethod
    def _single_template(cls, data: Any) -> Any:
        if isinstance(data, dict) and "template" in data:
            if "variants" in data:
                raise ValueError("give either template or variants, not both")
            rest = {k: v for k, v in data.items() if k != "template"}
            return {**rest, "variants": [{"name": "default", "weight": 1, "template": data["template"]}]}
        return data

    @field_validator("variants")
    @classmethod
    def _weights(cls, variants: list[Variant]) -> list[Variant]:
        total = sum(v.weight for v in variants)
        if abs(total - 1) > WEIGHT_TOLERANCE:
            raise ValueError(f"variant weights must sum to 1, not {total:g}")
        names = [v.name for v in variants]
        if len(set(names)) != len(names) or "holdout" in names:
            raise ValueError("variant names must be unique and not 'holdout'")
        return variants

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for i, variant in enumerate(self.variants):
            problem = channel_problem(variant.template, self.channel)
            if problem:
                raise ValueError(f"variants[{i}].template: {problem}")
        if (self.channel == "webhook") != (self.endpoint is not None):
            raise ValueError("endpoint is required for channel webhook and only for it")
        return self

    @property
    def variant_weights(self) -> list[tuple[str, float]]:
        return [(v.name, v.weight) for v in self.variants]

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)
