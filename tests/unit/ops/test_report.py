"""`userops report` without services or a browser: derivations, rendering, the command."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scripts.cli import app
from scripts.report import charts, derive
from scripts.report.data import Campaign, CoreUsers, Economy, Missing
from scripts.report.derive import Transition
from scripts.report.render import render, sections
from scripts.report.sample import sample_report

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ALL_CHARTS = [
    "stages",
    "retention",
    "funnel",
    "active",
    "core",
    "nps",
    "points",
    "points-by-rule",
    "budgets",
    "campaign-outcomes",
    "uplift",
]


@pytest.fixture(scope="module")
def full_html() -> str:
    return render(sample_report(NOW))


def charts_in(html: str) -> list[str]:
    return re.findall(r'<div class="chart" data-chart="([^"]+)">', html)


def test_stage_populations_are_rolled_back_through_the_changes_since() -> None:
    now = {"new": 5, "activated": 3, "active": 10, "at_risk": 2}
    since = [
        Transition(None, "new", 4),  # four users did not exist yet
        Transition("new", "activated", 3),
        Transition("active", "at_risk", 2),
    ]
    assert derive.stages_at(now, since) == {"new": 4, "activated": 0, "active": 12, "at_risk": 0}


def test_a_count_never_goes_below_zero() -> None:
    # an alias merge moves a second first-stage row to the user: more entries than users
    assert derive.stages_at({"new": 1}, [Transition(None, "new", 2)]) == {"new": 0}


def test_stage_series_ends_with_now_and_is_oldest_first() -> None:
    windows = [
        (NOW - timedelta(days=7), [Transition(None, "new", 1)]),
        (NOW - timedelta(days=14), [Transition(None, "new", 3)]),
    ]
    series = derive.stage_series({"new": 4}, NOW, windows)
    assert [p.at for p in series] == [NOW - timedelta(days=14), NOW - timedelta(days=7), NOW]
    assert [p.counts["new"] for p in series] == [1, 3, 4]


def test_activation_funnel_counts_first_stages_activations_and_kept_users() -> None:
    funnel = derive.activation_funnel(
        28,
        [
            Transition(None, "new", 10),
            Transition(None, "activated", 2),
            Transition("new", "activated", 5),
            Transition("activated", "active", 4),
            Transition("activated", "at_risk", 3),
            Transition("active", "at_risk", 9),
        ],
    )
    assert [(s.name, s.users) for s in funnel.steps] == [
        ("first seen", 12),
        ("activated", 7),
        ("active after the activation week", 4),
    ]


def test_every_chart_of_a_full_report_is_in_the_page_with_plotly_inline(full_html: str) -> None:
    html = full_html
    assert charts_in(html) == ALL_CHARTS
    for chart in ALL_CHARTS:
        assert f'<div id="chart-{chart}" class="plotly-graph-div"' in html
    assert "Plotly" in html and len(html) > 3_000_000  # plotly.js itself is in the page
    assert not re.search(r'<script[^>]+src=|<link[^>]+href=|@import|src="https?:', html)


def test_a_missing_section_says_which_service_failed_and_draws_no_chart() -> None:
    gone = Missing("notifier", "http://127.0.0.1:8003", "not reachable")
    html = render(replace(sample_report(NOW), campaigns=gone))
    assert "campaign-outcomes" not in charts_in(html) and "uplift" not in charts_in(html)
    assert 'data-unavailable="campaigns"' in html
    assert "Unavailable: notifier at http://127.0.0.1:8003: not reachable" in html
    assert charts_in(html)[:5] == ALL_CHARTS[:5]


def test_without_the_economy_endpoint_the_budgets_still_show_with_a_note() -> None:
    data = sample_report(NOW)
    assert isinstance(data.economy, Economy)
    html = render(replace(data, economy=replace(data.economy, totals=None, by_rule={})))
    shown = charts_in(html)
    assert "budgets" in shown and "points" not in shown and "points-by-rule" not in shown
    assert "need the rewards service&#39;s GET /v1/economy" in html


def test_campaign_figures_and_their_uplift_interval_are_in_the_table(full_html: str) -> None:
    html = full_html
    row = html[html.index("<td>welcome_nudge") :].split("</tr>")[0]
    cells = re.findall(r"<td>([^<]*)</td>", row)
    assert cells[:6] == ["welcome_nudge", "820", "45", "96", "3", "10%"]
    assert "+11.0 pp (significant)" in row and "95%: +1.2 to +20.0 pp" in row


def test_names_from_the_services_cannot_inject_markup() -> None:
    data = sample_report(NOW)
    assert isinstance(data.campaigns, list)
    evil = "</script><script>document.title='owned'</script>"
    campaigns: list[Campaign] = [*data.campaigns, replace(data.campaigns[0], name=evil)]
    html = render(replace(data, campaigns=campaigns))
    assert evil not in html
    assert "&lt;/script&gt;&lt;script&gt;" in html  # the table shows it, escaped


def test_section_titles_follow_the_issue_order() -> None:
    titles = [s.title for s in sections(sample_report(NOW))]
    assert titles == [
        "Users per lifecycle stage",
        "Weekly retention cohorts",
        "Activation funnel",
        "DAU, WAU, MAU and stickiness",
        "Core users",
        "NPS per week",
        "Points economy",
        "Campaigns",
    ]


def test_the_command_writes_a_sample_report(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "report.html"
    result = CliRunner().invoke(app, ["report", "--sample", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert charts_in(out.read_text(encoding="utf-8")) == ALL_CHARTS


def test_the_core_bar_shows_while_nobody_is_core() -> None:
    data = sample_report(NOW)
    assert isinstance(data.core, CoreUsers)
    empty = replace(data.core, core=0, segments={"loyal": 3})
    bars = charts.core(empty).data[0]
    assert list(bars.x) == ["MAU", "core", "loyal"] and list(bars.y) == [data.core.mau, 0, 3]
