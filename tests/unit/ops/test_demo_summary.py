"""`make demo > file`: the summary printed to a file or pipe keeps whole table cells (rich would use 80)."""

from __future__ import annotations

import io

import pytest

from scripts.sim.summary import Summary, print_summary, summary_console

CAMPAIGN = "points_expiring_reminder_for_dormant_members"
COHORT = "2026-03-02"


def _summary() -> Summary:
    rates = [1.0, 0.523, 0.411, 0.362, 0.331, 0.305, 0.287, 0.271]
    report = {
        "totals": {"sent": 1234, "deferred": 56, "capped": 78, "suppressed": 9, "cancelled": 3, "failed": 1},
        "uplift": {"treatment_rate": 0.123, "holdout_rate": 0.101, "difference": 0.022, "significant": True},
    }
    return Summary(
        stages={"new": 10, "activated": 20, "engaged": 30},
        run_stages={"new": 8, "activated": 15, "engaged": 25},
        activated={"organic": (12, 30), "paid_social": (9, 25)},
        active={"dau": 100, "wau": 300, "mau": 900, "stickiness": 0.111},
        retention=[{"start": COHORT, "size": 4321, "rates": rates}],
        nps=[],
        economy={
            "awarded": 5000,
            "redeemed": 1200,
            "expired": 300,
            "by_rule": {"signup_bonus": {"awarded": 5000, "reversed": 0, "expired": 300}},
        },
        campaigns={CAMPAIGN: report, "welcome": report},
    )


def test_the_summary_written_to_a_file_keeps_long_names_and_dates_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    buffer = io.StringIO()  # not a terminal, as stdout redirected to a file
    print_summary(_summary(), summary_console(buffer))
    lines = buffer.getvalue().splitlines()
    assert any(CAMPAIGN in line and "1234" in line and "+2.2 pts*" in line for line in lines), (
        buffer.getvalue()
    )
    assert any(COHORT in line and "4321" in line and "27.1%" in line for line in lines), buffer.getvalue()


def test_a_wider_terminal_size_setting_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "240")
    assert summary_console(io.StringIO()).width == 240
