"""The report's charts as plotly figures, one pure function per chart (data in, figure out)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import plotly.graph_objects as go

from scripts.report.data import (
    ActiveDay,
    Campaign,
    CohortRow,
    CoreUsers,
    Economy,
    Funnel,
    NpsWeek,
    StagePoint,
    Uplift,
)

STAGE_COLOURS: Final = {
    "new": "#9ecae1",
    "activated": "#3182bd",
    "active": "#31a354",
    "reactivated": "#a1d99b",
    "at_risk": "#fdae6b",
    "dormant": "#e6550d",
    "churned": "#969696",
}
OUTCOMES: Final = ("sent", "capped", "suppressed", "failed")
OUTCOME_COLOURS: Final = {
    "sent": "#31a354",
    "capped": "#fdae6b",
    "suppressed": "#9e9ac8",
    "failed": "#de2d26",
}


def _figure(*traces: Any, **layout: Any) -> go.Figure:
    fig = go.Figure(data=list(traces))
    defaults: dict[str, Any] = {
        "template": "plotly_white",
        "margin": {"l": 60, "r": 30, "t": 30, "b": 50},
        "legend": {"orientation": "h", "y": -0.2},
    }
    fig.update_layout(**(defaults | layout))
    return fig


def stages(points: Sequence[StagePoint]) -> go.Figure:
    """Stacked areas: users in each lifecycle stage at each point in time."""
    names = list(dict.fromkeys(stage for p in points for stage in p.counts))
    x = [p.at.isoformat() for p in points]
    return _figure(
        *(
            go.Scatter(
                x=x,
                y=[p.counts.get(stage, 0) for p in points],
                name=stage,
                stackgroup="stages",
                mode="lines+markers",
                line={"color": STAGE_COLOURS.get(stage)},
            )
            for stage in names
        ),
        yaxis_title="users",
        hovermode="x unified",
    )


def retention(cohorts: Sequence[CohortRow]) -> go.Figure:
    """Heatmap: row = weekly cohort (first active week, size), column = weeks later, cell = % active."""
    width = max((len(c.rates) for c in cohorts), default=0)
    z: list[list[float | None]] = [
        [round(100 * r, 1) for r in c.rates] + [None] * (width - len(c.rates)) for c in cohorts
    ]
    return _figure(
        go.Heatmap(
            z=z,
            x=[f"week {k}" for k in range(width)],
            y=[f"{c.start.isoformat()} ({c.size})" for c in cohorts],
            colorscale="Blues",
            zmin=0,
            zmax=100,
            text=[["" if v is None else f"{v:.0f}%" for v in row] for row in z],
            texttemplate="%{text}",
            hovertemplate="cohort %{y}<br>%{x}: %{z:.1f}%<extra></extra>",
            colorbar={"title": {"text": "% active"}},
        ),
        yaxis={"autorange": "reversed", "type": "category"},
        height=60 + 32 * max(len(cohorts), 4),
    )


def funnel(f: Funnel) -> go.Figure:
    """Funnel: users at each activation step, with each step's share of the first."""
    return _figure(
        go.Funnel(
            y=[s.name for s in f.steps],
            x=[s.users for s in f.steps],
            textinfo="value+percent initial",
            marker={"color": ["#9ecae1", "#3182bd", "#31a354"][: len(f.steps)]},
        ),
        margin={"l": 220, "r": 30, "t": 20, "b": 30},
    )


def active(days: Sequence[ActiveDay]) -> go.Figure:
    """Lines: DAU, WAU and MAU per day, stickiness (DAU/MAU) on the right axis."""
    x = [d.day.isoformat() for d in days]
    return _figure(
        go.Scatter(x=x, y=[d.dau for d in days], name="DAU", mode="lines+markers"),
        go.Scatter(x=x, y=[d.wau for d in days], name="WAU", mode="lines+markers"),
        go.Scatter(x=x, y=[d.mau for d in days], name="MAU", mode="lines+markers"),
        go.Scatter(
            x=x,
            y=[round(100 * d.stickiness, 1) for d in days],
            name="stickiness (DAU/MAU, %)",
            mode="lines",
            line={"dash": "dot", "color": "#636363"},
            yaxis="y2",
        ),
        yaxis={"title": {"text": "users"}, "rangemode": "tozero"},
        yaxis2={
            "title": {"text": "stickiness %"},
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
            "tickmode": "auto",
        },
        hovermode="x unified",
    )


def core(c: CoreUsers) -> go.Figure:
    """Bars: members of each value segment now, the `core` layer highlighted, MAU for scale."""
    segments = {**c.segments, "core": c.core}  # the core bar shows even while it is empty
    names = ["MAU", *sorted(segments, key=lambda s: (s != "core", s))]
    values = [c.mau, *(segments[s] for s in names[1:])]
    colours = ["#bdbdbd", *("#3182bd" if s == "core" else "#9ecae1" for s in names[1:])]
    return _figure(
        go.Bar(x=names, y=values, marker={"color": colours}, text=values, textposition="outside"),
        yaxis_title="users",
    )


def nps(weeks: Sequence[NpsWeek]) -> go.Figure:
    """Stacked bars of answers per week by category, with the week's NPS as a line (right axis)."""
    x = [w.start.isoformat() for w in weeks]
    return _figure(
        go.Bar(x=x, y=[w.promoters for w in weeks], name="promoters", marker={"color": "#31a354"}),
        go.Bar(x=x, y=[w.passives for w in weeks], name="passives", marker={"color": "#bdbdbd"}),
        go.Bar(x=x, y=[w.detractors for w in weeks], name="detractors", marker={"color": "#de2d26"}),
        go.Scatter(
            x=x,
            y=[w.nps for w in weeks],
            name="NPS",
            mode="lines+markers",
            yaxis="y2",
            line={"color": "#08519c"},
            connectgaps=False,
        ),
        barmode="stack",
        yaxis={"title": {"text": "answers"}},
        yaxis2={
            "title": {"text": "NPS"},
            "overlaying": "y",
            "side": "right",
            "range": [-100, 100],
            "tickmode": "auto",
        },
        hovermode="x unified",
    )


def points(e: Economy) -> go.Figure | None:
    """Bars: points awarded, redeemed and expired so far (None without the totals)."""
    if e.totals is None:
        return None
    names = ["awarded", "redeemed", "expired"]
    values = [e.totals.awarded, e.totals.redeemed, e.totals.expired]
    return _figure(
        go.Bar(
            x=names,
            y=values,
            text=values,
            textposition="outside",
            marker={"color": ["#31a354", "#3182bd", "#969696"]},
        ),
        yaxis_title="points",
    )


def points_by_rule(e: Economy) -> go.Figure | None:
    """Horizontal bars: points awarded per earning rule (None when not reported)."""
    if not e.by_rule:
        return None
    rules = sorted(e.by_rule, key=lambda r: e.by_rule[r])
    return _figure(
        go.Bar(y=rules, x=[e.by_rule[r] for r in rules], orientation="h", marker={"color": "#31a354"}),
        xaxis_title="points awarded",
        margin={"l": 160, "r": 30, "t": 20, "b": 50},
        height=80 + 28 * max(len(rules), 3),
    )


def budgets(e: Economy) -> go.Figure | None:
    """Stacked horizontal bars per budgeted rule: points spent and left of its limit."""
    if not e.budgets:
        return None
    rules = [b.rule_id for b in e.budgets]
    return _figure(
        go.Bar(
            y=rules,
            x=[b.spent for b in e.budgets],
            name="spent",
            orientation="h",
            marker={"color": "#e6550d"},
        ),
        go.Bar(
            y=rules,
            x=[b.remaining for b in e.budgets],
            name="left",
            orientation="h",
            marker={"color": "#a1d99b"},
        ),
        barmode="stack",
        xaxis_title="points",
        margin={"l": 160, "r": 30, "t": 20, "b": 50},
        height=120 + 28 * max(len(rules), 3),
    )


def campaign_outcomes(campaigns: Sequence[Campaign]) -> go.Figure | None:
    """Grouped bars per campaign: messages sent, capped, suppressed and failed."""
    if not campaigns:
        return None
    names = [c.name for c in campaigns]
    return _figure(
        *(
            go.Bar(
                x=names,
                y=[c.totals.get(kind, 0) for c in campaigns],
                name=kind,
                marker={"color": OUTCOME_COLOURS[kind]},
            )
            for kind in OUTCOMES
        ),
        barmode="group",
        yaxis_title="sends",
    )


def uplift(campaigns: Sequence[Campaign]) -> go.Figure | None:
    """Points with error bars: each campaign's uplift (treatment - holdout goal rate, in
    percentage points) and its confidence interval; None while no campaign has one."""
    shown: list[tuple[str, Uplift, float]] = [
        (c.name, c.uplift, c.uplift.difference)
        for c in campaigns
        if c.uplift is not None and c.uplift.difference is not None
    ]
    if not shown:
        return None
    diffs = [round(100 * d, 2) for _, _, d in shown]
    lows = [round(100 * (d - u.low), 2) if u.low is not None else 0.0 for _, u, d in shown]
    highs = [round(100 * (u.high - d), 2) if u.high is not None else 0.0 for _, u, d in shown]
    return _figure(
        go.Scatter(
            x=[name for name, _, _ in shown],
            y=diffs,
            mode="markers",
            marker={
                "size": 12,
                "color": ["#31a354" if u.significant else "#636363" for _, u, _ in shown],
            },
            error_y={"type": "data", "symmetric": False, "array": highs, "arrayminus": lows},
            name="uplift",
        ),
        yaxis={"title": {"text": "uplift (percentage points)"}, "zeroline": True, "zerolinewidth": 2},
        showlegend=False,
    )
