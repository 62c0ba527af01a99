"""What a report shows, as typed values: the contract between fetching and rendering.

Every section is either its data or `Missing` (the service that should have answered, where,
and why not), so a report can be rendered with a section marked unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class Missing:
    """A section whose service did not answer: rendered as "unavailable" with the reason."""

    service: str
    url: str
    reason: str


@dataclass(frozen=True)
class StagePoint:
    """Users per lifecycle stage at one instant."""

    at: datetime
    counts: dict[str, int]


@dataclass(frozen=True)
class CohortRow:
    """A weekly cohort (users by first active week) and the share active k weeks later."""

    start: date
    size: int
    rates: list[float]


@dataclass(frozen=True)
class FunnelStep:
    name: str
    users: int


@dataclass(frozen=True)
class Funnel:
    """Activation funnel over the last `days` days."""

    days: int
    steps: list[FunnelStep]


@dataclass(frozen=True)
class ActiveDay:
    day: date
    dau: int
    wau: int
    mau: int
    stickiness: float


@dataclass(frozen=True)
class CoreUsers:
    """Core users now (the `core` value layer), against the month's active users."""

    core: int
    mau: int
    segments: dict[str, int]


@dataclass(frozen=True)
class NpsWeek:
    start: date
    responses: int
    promoters: int
    passives: int
    detractors: int
    nps: float | None


@dataclass(frozen=True)
class Budget:
    rule_id: str
    limit: int
    spent: int
    remaining: int


@dataclass(frozen=True)
class PointsTotals:
    awarded: int
    redeemed: int
    expired: int


@dataclass(frozen=True)
class Economy:
    """The points economy. `totals` is None where the rewards service has no `/v1/economy`."""

    totals: PointsTotals | None
    by_rule: dict[str, int]
    budgets: list[Budget]


@dataclass(frozen=True)
class Uplift:
    """Goal rate of treatment minus holdout, with its confidence interval (None: no data)."""

    treatment_entries: int
    holdout_entries: int
    treatment_rate: float | None
    holdout_rate: float | None
    difference: float | None
    low: float | None
    high: float | None
    confidence: float
    significant: bool


@dataclass(frozen=True)
class Campaign:
    name: str
    enabled: bool
    channel: str
    holdout: float
    totals: dict[str, int]
    uplift: Uplift | None
    variant_uplift: dict[str, Uplift] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportData:
    """Everything one report shows; `sources` maps each service to the URL it was read from."""

    generated_at: datetime
    sources: dict[str, str]
    stages: list[StagePoint] | Missing
    retention: list[CohortRow] | Missing
    funnel: Funnel | Missing
    active: list[ActiveDay] | Missing
    core: CoreUsers | Missing
    nps: list[NpsWeek] | Missing
    economy: Economy | Missing
    campaigns: list[Campaign] | Missing
