"""The notifier's rules (`config/notifier.yaml`) as typed, validated, frozen models.

Load with `load_config(path)`: every model rejects unknown fields, and a bad file raises
`ConfigError` naming the file, the field path (e.g. `campaigns[2].variants[1].template.body`),
the campaign by name, and the problem: an unknown trigger, a template that does not compile or
uses an unknown variable or undeclared trait, variant weights not summing to 1, a holdout
outside [0, 1), an endpoint or topic that is not declared, and so on.

Campaign models live in `domain/campaign.py`; this module holds the file-level settings and the
checks that span sections (topics, endpoints, tiers, declared traits).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BeforeValidator,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from services.notifier.domain.campaign import Campaign, Variant
from services.notifier.domain.caps import FrequencyCap
from services.notifier.domain.conditions import TAG_PREFIX as COND_TAG
from services.notifier.domain.duration import Duration
from services.notifier.domain.projection import ProjectionRules
from services.notifier.domain.quiet_hours import QuietWindow
from services.notifier.domain.templates import referenced_traits
from services.notifier.domain.triggers import TAG_PREFIX as TRIGGER_TAG
from services.notifier.domain.triggers import ExpirySpec, PointsExpiringTrigger, RewardsTrigger
from shared.config import StrictModel, config_version, load_yaml
from shared.contracts.deliveries import Channel


def _wall_time(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError("write the time in quotes, e.g. '21:00' (unquoted, YAML reads 21:00 as a number)")
    return value


WallTime = Annotated[time, BeforeValidator(_wall_time)]


class QuietHoursConfig(StrictModel):
    """Local wall-clock window `[start, end)` in which messages wait (spans midnight if start > end)."""

    start: WallTime
    end: WallTime

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self

    @property
    def window(self) -> QuietWindow:
        return QuietWindow(self.start, self.end)


class UnsubscribeConfig(StrictModel):
    """Where one-click unsubscribe links point and how long they stay valid (the signing secret
    comes from the environment, never from this file)."""

    base_url: str = Field(pattern=r"^https?://\S+$")
    ttl: Duration = timedelta(days=90)


class Endpoint(StrictModel):
    """A webhook destination (its Standard Webhooks secret comes from the environment)."""

    url: str = Field(pattern=r"^https?://\S+$")
    description: str = ""


class NpsConfig(StrictModel):
    event: str = "NPS Submitted"
    score_property: str = "score"
    comment_property: str = "comment"


@dataclass(frozen=True, slots=True)
class Derived:
    """Lookups computed once per config."""

    campaigns: dict[str, Campaign]
    expiry_specs: dict[str, ExpirySpec]
    """Enabled points-expiring campaigns and their trigger specs."""
    cap_horizon: timedelta
    """The longest cap window: the cap history the projection must keep."""
    rules: ProjectionRules
    quiet: QuietWindow | None


class NotifierConfig(StrictModel):
    """The whole notifier rule set; `version` is stamped on every output."""

    version: str = "dev"
    timezone: str = "UTC"
    """The timezone of users whose own is unknown."""
    quiet_hours: QuietHoursConfig | None = QuietHoursConfig(start=time(21), end=time(8))
    suppress_churned_after: Duration | None = timedelta(days=180)
    """Users churned for at least this long get nothing (None: never suppress)."""
    caps: list[FrequencyCap] = Field(default_factory=list)
    """Per user across every campaign that takes part in global caps."""
    unsubscribe: UnsubscribeConfig
    signup_event: str = "Signed Up"
    nps: NpsConfig = NpsConfig()
    tiers: list[str] = Field(default_factory=list)
    """Tier names from lowest to highest (for `tier_changed` direction)."""
    traits: list[str] | None = None
    """When given, templates may read only these traits."""
    topics: list[str] = Field(min_length=1)
    endpoints: dict[str, Endpoint] = Field(default_factory=dict)
    campaigns: list[Campaign] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown timezone {value!r} (use an IANA name such as 'Europe/Berlin')"
            ) from exc
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _readable(cls, data: Any, handler: ModelWrapValidatorHandler[Self], info: ValidationInfo) -> Self:
        if isinstance(data, dict) and info.context and "version" in info.context:
            data = {**data, "version": info.context["version"]}
        try:
            cfg = handler(data)
        except ValidationError as exc:
            raise _readable_errors(exc.errors(), data, exc.title) from None
        problems = _cross_checks(cfg)
        if problems:
            details = [
                {"type": "value_error", "loc": loc, "msg": msg, "input": None} for loc, msg in problems
            ]
            raise _readable_errors(details, data, exc_title=cls.__name__) from None
        return cfg

    @cached_property
    def derived(self) -> Derived:
        enabled = [c for c in self.campaigns if c.enabled]
        horizons = [cap.period for c in enabled for cap in c.caps] + [cap.period for cap in self.caps]
        return Derived(
            campaigns={c.name: c for c in enabled},
            expiry_specs={
                c.name: c.trigger.points_expiring
                for c in enabled
                if isinstance(c.trigger, PointsExpiringTrigger)
            },
            cap_horizon=max(horizons, default=timedelta(0)),
            rules=ProjectionRules(
                signup_event=self.signup_event,
                nps_event=self.nps.event,
                score_property=self.nps.score_property,
                comment_property=self.nps.comment_property,
            ),
            quiet=self.quiet_hours.window if self.quiet_hours else None,
        )


Loc = tuple[int | str, ...]


def _cross_checks(cfg: NotifierConfig) -> list[tuple[Loc, str]]:
    """Checks that span sections, each with the path of the offending field."""
    out: list[tuple[Loc, str]] = []
    seen: set[str] = set()
    for i, c in enumerate(cfg.campaigns):
        at: Loc = ("campaigns", i)
        if c.name in seen:
            out.append(((*at, "name"), f"campaign name {c.name!r} is used twice"))
        seen.add(c.name)
        if c.topic not in cfg.topics:
            out.append(((*at, "topic"), f"topic {c.topic!r} is not among topics: {', '.join(cfg.topics)}"))
        if c.endpoint is not None and c.endpoint not in cfg.endpoints:
            out.append(((*at, "endpoint"), f"endpoint {c.endpoint!r} is not declared under endpoints"))
        if isinstance(c.trigger, RewardsTrigger):
            spec = c.trigger.rewards
            if spec.direction and len(cfg.tiers) < 2:
                out.append(((*at, "trigger", "rewards", "direction"), "needs the tier order in tiers"))
            unknown = sorted(set(spec.tiers or ()) - set(cfg.tiers))
            if unknown:
                out.append(((*at, "trigger", "rewards", "tiers"), f"unknown tier(s) {', '.join(unknown)}"))
        if cfg.traits is None:
            continue
        for j, variant in enumerate(c.variants):
            for path, source in variant.template.sources().items():
                unknown = sorted(referenced_traits(source) - set(cfg.traits))
                if unknown:
                    loc = (*at, "variants", j, "template", *path.split("."))
                    out.append(
                        (
                            loc,
                            f"uses undeclared trait(s) {', '.join(unknown)} (traits: {', '.join(cfg.traits)})",
                        )
                    )
    return out


def _readable_errors(errors: Any, data: Any, exc_title: str) -> ValidationError:
    """The errors with union tags dropped from paths, a shorthand `template` path restored, and
    the campaign's name in the message."""
    details: list[InitErrorDetails] = []
    raw = data.get("campaigns") if isinstance(data, dict) else None
    for err in errors:
        loc: Loc = tuple(
            p for p in err["loc"] if not (isinstance(p, str) and p.startswith((COND_TAG, TRIGGER_TAG)))
        )
        message = err["msg"].removeprefix("Value error, ")
        if len(loc) >= 2 and loc[0] == "campaigns" and isinstance(loc[1], int) and isinstance(raw, list):
            item = raw[loc[1]] if loc[1] < len(raw) else None
            if isinstance(item, dict):
                if "template" in item and loc[2:5] == ("variants", 0, "template"):
                    loc = (*loc[:2], "template", *loc[5:])
                if "template" in item:
                    message = message.replace("variants[0].template", "template")
                if isinstance(item.get("name"), str):
                    message = f"campaign {item['name']!r}: {message}"
        message = message.replace("{", "{{").replace("}", "}}")
        details.append(
            {"type": PydanticCustomError("config", message), "loc": loc, "input": err.get("input")}
        )
    return ValidationError.from_exception_data(exc_title, details)


def load_config(path: Path) -> NotifierConfig:
    """Load and validate `path`; `version` becomes the file's content hash."""
    return load_yaml(path, NotifierConfig, context={"version": config_version(path)})


__all__ = ["Campaign", "Channel", "Endpoint", "NotifierConfig", "QuietHoursConfig", "Variant", "load_config"]
