"""Per-campaign report: what became of its sends, by variant, and whether it worked.

Inputs are what the service stored: the outcome of every send attempt (`SendOutcome.kind` per
variant; delivery failures recorded by the job worker count as `failed`) and every entry with
whether it converted. `deferred` counts deferrals (a send deferred then sent counts in both).
Uplift compares the goal rate of all treated entries (every variant) with the holdout's, and of
each variant with the holdout, with Newcombe's 95 % interval (`uplift.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from services.notifier.domain.assignment import HOLDOUT
from services.notifier.domain.sends import OUTCOME_KINDS, OutcomeKind
from services.notifier.domain.uplift import Uplift, uplift


@dataclass(frozen=True, slots=True)
class GroupGoals:
    """Entries of one group and how many reached the goal."""

    entries: int = 0
    converted: int = 0


@dataclass(frozen=True, slots=True)
class CampaignReport:
    """`outcomes[variant][kind]` counts, `totals[kind]`, goal counts per group, and uplift
    (None when the campaign has no holdout entries or no treated entries yet)."""

    campaign: str
    outcomes: dict[str, dict[OutcomeKind, int]]
    totals: dict[OutcomeKind, int]
    goals: dict[str, GroupGoals]
    uplift: Uplift | None
    variant_uplift: dict[str, Uplift] = field(default_factory=dict)


def campaign_report(
    campaign: str,
    outcomes: Iterable[tuple[str, OutcomeKind]],
    entries: Iterable[tuple[str, bool]],
    confidence: float = 0.95,
) -> CampaignReport:
    """Aggregate `(variant, kind)` outcomes and `(group, converted)` entries of one campaign."""
    by_variant: dict[str, dict[OutcomeKind, int]] = {}
    totals: dict[OutcomeKind, int] = dict.fromkeys(OUTCOME_KINDS, 0)
    for variant, kind in outcomes:
        counts = by_variant.setdefault(variant, dict.fromkeys(OUTCOME_KINDS, 0))
        counts[kind] += 1
        totals[kind] += 1
    tally: dict[str, list[int]] = {}
    for group, converted in entries:
        row = tally.setdefault(group, [0, 0])
        row[0] += 1
        row[1] += int(converted)
    goals = {group: GroupGoals(n, x) for group, (n, x) in sorted(tally.items())}
    holdout = goals.get(HOLDOUT, GroupGoals())
    treated = [g for name, g in goals.items() if name != HOLDOUT]
    treated_n = sum(g.entries for g in treated)
    treated_x = sum(g.converted for g in treated)
    overall = None
    per_variant: dict[str, Uplift] = {}
    if holdout.entries and treated_n:
        overall = uplift(treated_x, treated_n, holdout.converted, holdout.entries, confidence)
        per_variant = {
            name: uplift(g.converted, g.entries, holdout.converted, holdout.entries, confidence)
            for name, g in goals.items()
            if name != HOLDOUT and g.entries
        }
    return CampaignReport(campaign, by_variant, totals, goals, overall, per_variant)
