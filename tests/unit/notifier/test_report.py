"""The per-campaign report: outcomes by variant, goals by group, uplift."""

from __future__ import annotations

import pytest

from services.notifier.domain.report import GroupGoals, campaign_report


def test_counts_by_variant_and_totals() -> None:
    outcomes = (
        [("a", "sent")] * 5
        + [("a", "capped")] * 2
        + [("b", "sent")] * 4
        + [("b", "deferred"), ("b", "failed")]
    )
    report = campaign_report("winback", outcomes, [])  # type: ignore[arg-type]
    assert report.outcomes["a"]["sent"] == 5 and report.outcomes["a"]["capped"] == 2
    assert report.outcomes["b"]["failed"] == 1 and report.outcomes["b"]["suppressed"] == 0
    assert report.totals["sent"] == 9 and report.totals["deferred"] == 1
    assert report.uplift is None


def test_uplift_of_treatment_and_of_each_variant_against_holdout() -> None:
    entries = [("a", True)] * 30 + [("a", False)] * 70 + [("b", True)] * 20 + [("b", False)] * 80
    entries += [("holdout", True)] * 10 + [("holdout", False)] * 90
    report = campaign_report("winback", [], entries)
    assert report.goals == {
        "a": GroupGoals(100, 30),
        "b": GroupGoals(100, 20),
        "holdout": GroupGoals(100, 10),
    }
    assert report.uplift is not None
    assert (report.uplift.treatment_rate, report.uplift.holdout_rate) == (0.25, 0.10)
    assert report.uplift.difference == pytest.approx(0.15)
    assert report.uplift.significant
    assert report.variant_uplift["a"].difference == pytest.approx(0.20)
    assert report.variant_uplift["b"].difference == pytest.approx(0.10)
