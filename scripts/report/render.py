"""Render a report: `ReportData` in, one self-contained HTML page out (a pure function).

plotly.js is inlined once in the page's head and each chart is a `<div class="chart">` holding
one plotly figure, so the file opens anywhere with no network. Text from the services (campaign
and rule names) is escaped by the template and by plotly's JSON encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import plotly.graph_objects as go
import plotly.io as pio
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from scripts.report import charts
from scripts.report.data import Missing, ReportData

TEMPLATES = Path(__file__).parent / "templates"
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}


@dataclass(frozen=True)
class Chart:
    """One chart of a section: its id (also the container's `data-chart`) and its HTML."""

    id: str
    html: Markup


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    what: str
    charts: list[Chart] = field(default_factory=list)
    missing: Missing | None = None
    notes: list[str] = field(default_factory=list)


def _chart(chart_id: str, figure: go.Figure, height: int = 380) -> Chart:
    height = int(figure.layout.height or height)
    html = pio.to_html(
        figure,
        full_html=False,
        include_plotlyjs=False,
        div_id=f"chart-{chart_id}",
        config=PLOTLY_CONFIG,
        default_height=f"{height}px",
        validate=True,
    )
    return Chart(chart_id, Markup(html))


def _section(sid: str, title: str, what: str, value: Any, build: Any) -> Section:
    """A section of `value` (charts from `build(value)`), or its `Missing` reason."""
    if isinstance(value, Missing):
        return Section(sid, title, what, missing=value)
    built: tuple[list[Chart], list[str]] = build(value)
    return Section(sid, title, what, charts=built[0], notes=built[1])


def sections(data: ReportData) -> list[Section]:
    """The report's sections in page order."""

    def economy(e: Any) -> tuple[list[Chart], list[str]]:
        out, notes = [], []
        for cid, fig in (
            ("points", charts.points(e)),
            ("points-by-rule", charts.points_by_rule(e)),
            ("budgets", charts.budgets(e)),
        ):
            if fig is not None:
                out.append(_chart(cid, fig))
        if e.totals is None:
            notes.append("Points awarded, redeemed and expired need the rewards service's GET /v1/economy.")
        if not e.budgets:
            notes.append("No earning rule has a budget.")
        return out, notes

    def campaigns(cs: Any) -> tuple[list[Chart], list[str]]:
        out, notes = [], []
        outcomes = charts.campaign_outcomes(cs)
        if outcomes is None:
            notes.append("No campaigns are configured.")
        else:
            out.append(_chart("campaign-outcomes", outcomes))
        lift = charts.uplift(cs)
        if lift is None:
            notes.append(
                "No campaign has measured uplift yet (it needs goal entries in treatment and holdout)."
            )
        else:
            out.append(_chart("uplift", lift))
        return out, notes

    return [
        _section(
            "stages",
            "Users per lifecycle stage",
            "How many users were in each lifecycle stage, weekly up to now (derived from the stage changes).",
            data.stages,
            lambda v: ([_chart("stages", charts.stages(v))], []),
        ),
        _section(
            "retention",
            "Weekly retention cohorts",
            "Users by the week they were first active (row; cohort size in brackets) and the share "
            "of them active again k weeks later (column).",
            data.retention,
            lambda v: ([_chart("retention", charts.retention(v))], []),
        ),
        _section(
            "funnel",
            "Activation funnel",
            f"Users first seen, users who met the activation condition, and users still active after "
            f"their activation week, over the last {getattr(data.funnel, 'days', '')} days.",
            data.funnel,
            lambda v: ([_chart("funnel", charts.funnel(v), 300)], []),
        ),
        _section(
            "active",
            "DAU, WAU, MAU and stickiness",
            "Distinct active users per day, over the trailing 7 and 30 days, and stickiness (DAU / MAU).",
            data.active,
            lambda v: ([_chart("active", charts.active(v))], []),
        ),
        _section(
            "core",
            "Core users",
            "Members of the core layer (active on many of the last 28 days) and of every other value "
            "segment now, beside the month's active users.",
            data.core,
            lambda v: ([_chart("core", charts.core(v))], []),
        ),
        _section(
            "nps",
            "NPS per week",
            "Answers per ISO week by category (promoters 9-10, passives 7-8, detractors 0-6) and the "
            "week's NPS (% promoters - % detractors; a user counts once a week).",
            data.nps,
            lambda v: ([_chart("nps", charts.nps(v))], []),
        ),
        _section(
            "economy",
            "Points economy",
            "Points awarded, redeemed and expired, points awarded per rule, and each budgeted rule's "
            "points spent and left.",
            data.economy,
            economy,
        ),
        _section(
            "campaigns",
            "Campaigns",
            "Per campaign: messages sent, capped, suppressed and failed, and the uplift of its goal "
            "(treatment minus holdout conversion) with its confidence interval; green = significant.",
            data.campaigns,
            campaigns,
        ),
    ]


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def _plotly_js() -> Markup:
    return Markup(get_plotlyjs())


def render(data: ReportData) -> str:
    """The report as one HTML document with every script inline."""
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            data=data,
            sections=sections(data),
            plotly_js=_plotly_js(),
            campaigns=[] if isinstance(data.campaigns, Missing) else data.campaigns,
        )
    )
