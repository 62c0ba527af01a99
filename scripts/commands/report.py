"""`userops report`: one self-contained HTML file of the platform's numbers, read from the
services' admin APIs (`USEROPS_SEGMENTER_URL`, `USEROPS_REWARDS_URL`, `USEROPS_NOTIFIER_URL`,
`USEROPS_ADMIN_TOKEN`; local defaults)."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console

from scripts.commands import fail


def report_cmd(
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="the HTML file to write"),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="render a section whose service does not answer as unavailable"
    ),
    weeks: int = typer.Option(12, min=2, max=52, help="weeks of weekly series (stages, cohorts, NPS)"),
    days: int = typer.Option(28, min=7, max=90, help="days of daily series (DAU/WAU/MAU) and of the funnel"),
    screenshot: Path | None = typer.Option(
        None, help="also open the page in headless Chromium, check every chart drew, and save a PNG"
    ),
    sample: bool = typer.Option(
        False, "--sample", help="render built-in sample figures instead of asking services"
    ),
    timeout: float = typer.Option(10.0, min=0.1, help="seconds to wait for each API answer"),
) -> None:
    """Build one HTML file (no network needed to open it): users per lifecycle stage over time,
    weekly retention cohorts, the activation funnel, DAU/WAU/MAU and stickiness, core users,
    NPS per week, the points economy, and each campaign's outcomes and uplift.

    Example: userops report --out report.html --screenshot docs/report.png
    """
    from scripts.report.data import Missing
    from scripts.report.fetch import Endpoints, ServiceError, fetch_report
    from scripts.report.render import render
    from scripts.report.sample import sample_report

    console = Console(stderr=True, soft_wrap=True)
    now = datetime.now(UTC)
    if sample:
        data = sample_report(now, weeks, days)
    else:
        endpoints = Endpoints.from_env(dict(os.environ))
        try:
            data = asyncio.run(
                fetch_report(
                    endpoints, now=now, allow_missing=allow_missing, weeks=weeks, days=days, timeout=timeout
                )
            )
        except ServiceError as exc:
            fail(f"{exc} (pass --allow-missing to render its sections as unavailable)")
    html = render(data)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out}: {exc}")
    missing = sorted({m.service for m in vars(data).values() if isinstance(m, Missing)})
    console.print(f"wrote {out} ({len(html.encode()) / 1e6:.1f} MB)")
    if missing:
        console.print(f"[yellow]unavailable: sections of {', '.join(missing)}[/yellow]")
    if screenshot is not None:
        _screenshot(out, screenshot, console)


def _screenshot(page: Path, png: Path, console: Console) -> None:
    try:
        from scripts.report.browser import ChromiumMissing, open_report
    except ImportError as exc:
        fail(f"--screenshot needs the development dependencies (make install): {exc}")
    try:
        png.parent.mkdir(parents=True, exist_ok=True)
        check = asyncio.run(open_report(page, screenshot=png))
    except ChromiumMissing as exc:
        fail(str(exc))
    problems = [f"chart '{c}' drew nothing" for c in check.blank_charts]
    problems += [f"request to {u}" for u in check.external_requests] + check.errors
    if problems:
        fail(f"{page} did not render cleanly: " + "; ".join(problems))
    console.print(f"saved {png}: {len(check.charts)} charts drawn, no network, no script errors")
