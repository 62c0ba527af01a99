"""The rendered report opened in headless Chromium (Debian's), offline: every chart draws,
nothing is fetched from the network, no script errors; and the checker catches a page that fails.

Skipped, with the reason printed, only where no Chromium is installed (`apt-get install chromium`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scripts.report.browser import ChromiumMissing, PageCheck, chromium_path, open_report
from scripts.report.render import render
from scripts.report.sample import sample_report
from tests.unit.ops.test_report import ALL_CHARTS

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

try:
    chromium_path()
    NO_CHROMIUM = ""
except ChromiumMissing as exc:
    NO_CHROMIUM = str(exc)

pytestmark = pytest.mark.skipif(bool(NO_CHROMIUM), reason=NO_CHROMIUM)


@pytest.fixture(scope="module")
def page_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("report-browser")


@pytest.fixture(scope="module")
async def opened(page_dir: Path) -> PageCheck:
    data = sample_report(NOW)
    assert isinstance(data.campaigns, list)
    hostile = replace(data.campaigns[0], name="</script><img src=http://192.0.2.1/x.png>")
    html = page_dir / "report.html"
    html.write_text(render(replace(data, campaigns=[*data.campaigns, hostile])), encoding="utf-8")
    return await open_report(html, screenshot=page_dir / "report.png")


async def test_every_chart_container_drew_marks(opened: PageCheck) -> None:
    assert [c.id for c in opened.charts] == ALL_CHARTS
    assert opened.blank_charts == []
    assert all(c.svgs >= 1 for c in opened.charts)


async def test_the_page_loads_with_the_network_off(opened: PageCheck) -> None:
    assert opened.requests, "the page's own load was not seen"
    assert opened.external_requests == []
    assert all(u.startswith(("file:", "data:")) for u in opened.requests)


async def test_no_script_errors(opened: PageCheck) -> None:
    assert opened.errors == []


async def test_a_screenshot_is_saved(opened: PageCheck, page_dir: Path) -> None:
    png = (page_dir / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 100_000  # a full page of charts, not a blank frame


async def test_the_checker_sees_blank_charts_requests_and_errors(page_dir: Path) -> None:
    broken = page_dir / "broken.html"
    broken.write_text(
        "<!DOCTYPE html><html><body>"
        '<div class="chart" data-chart="empty"></div>'
        '<img src="http://192.0.2.1/pixel.png">'
        "<script>console.error('bad data'); undefinedFunction();</script>"
        "</body></html>",
        encoding="utf-8",
    )
    check = await open_report(broken, timeout_s=1.0)
    assert check.blank_charts == ["empty"]
    assert check.external_requests == ["http://192.0.2.1/pixel.png"]
    assert any("bad data" in e for e in check.errors)
    assert any("undefinedFunction" in e for e in check.errors)
