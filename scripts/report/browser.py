"""Open a report in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright over the
DevTools protocol) with the network off, and say what rendered; optionally save a screenshot.

Used by the report's tests and by `userops report --screenshot`. No browser is downloaded:
Playwright only drives the Chromium the machine has (`USEROPS_CHROMIUM` overrides the path).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

CHROMIUM_FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

# Drawn marks inside a plotly chart's plot area: bars, line and marker paths, funnel segments,
# heatmap images; axes and grid lines live outside `g.overplot` and do not count.
_INSPECT_JS: Final = """
() => Array.from(document.querySelectorAll('.chart')).map(c => ({
  id: c.dataset.chart,
  svgs: c.querySelectorAll('svg.main-svg').length,
  marks: Array.from(c.querySelectorAll('svg.main-svg g.overplot path, svg.main-svg g.overplot image'))
    .filter(m => m.tagName === 'image' ? !!m.getAttribute('href') : !!(m.getAttribute('d') || '').trim())
    .length,
}))
"""


class ChromiumMissing(RuntimeError):
    """No Chromium binary where one was looked for."""


def chromium_path(env: dict[str, str] | None = None) -> str:
    """The Chromium to drive: `USEROPS_CHROMIUM`, else `chromium` on PATH."""
    given = (env if env is not None else dict(os.environ)).get("USEROPS_CHROMIUM")
    found = given or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found or not Path(found).exists():
        raise ChromiumMissing(
            f"no Chromium found ({'USEROPS_CHROMIUM=' + given if given else 'chromium not on PATH'}); "
            "install Debian's package: apt-get install -y chromium"
        )
    return found


@dataclass
class ChartRender:
    id: str
    svgs: int
    marks: int


@dataclass
class PageCheck:
    """What opening the page showed: every request's URL, console errors and uncaught
    exceptions, and each chart container's rendered SVGs and marks."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    charts: list[ChartRender] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)

    @property
    def external_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(("file:", "data:"))]

    @property
    def blank_charts(self) -> list[str]:
        return [c.id for c in self.charts if c.svgs == 0 or c.marks == 0]


def _file_url(path: Path) -> str:
    return path.absolute().as_uri()


async def open_report(
    html: Path, *, screenshot: Path | None = None, width: int = 1280, timeout_s: float = 60.0
) -> PageCheck:
    """Load `html` from disk in headless Chromium, offline, and inspect every chart."""
    from playwright.async_api import Request, Route, async_playwright
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    check = PageCheck()
    executable = chromium_path()
    url = _file_url(html)

    async def only_local(route: Route) -> None:
        if route.request.url.startswith(("file:", "data:")):
            await route.continue_()
        else:
            await route.abort("internetdisconnected")

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=executable, args=list(CHROMIUM_FLAGS), headless=True
        )
        try:
            context = await browser.new_context(offline=True, viewport={"width": width, "height": 900})
            await context.route("**/*", only_local)
            page = await context.new_page()

            def on_request(request: Request) -> None:
                check.requests.append(request.url)

            def on_console(message: Any) -> None:
                if message.type == "error":
                    check.errors.append(f"console: {message.text}")

            def on_page_error(error: Any) -> None:
                check.errors.append(f"uncaught: {error}")

            page.on("request", on_request)
            page.on("console", on_console)
            page.on("pageerror", on_page_error)
            await page.goto(url, wait_until="load", timeout=timeout_s * 1000)
            try:
                await page.wait_for_function(
                    "() => Array.from(document.querySelectorAll('.chart'))"
                    ".every(c => c.querySelector('svg.main-svg g.overplot .mlayer'))",
                    timeout=timeout_s * 1000,
                )
            except PlaywrightTimeout:
                pass  # what did not draw in time is reported as a blank chart below
            check.charts = [ChartRender(**c) for c in await page.evaluate(_INSPECT_JS)]
            check.unavailable = await page.evaluate(
                "() => Array.from(document.querySelectorAll('[data-unavailable]')).map(e => e.dataset.unavailable)"
            )
            if screenshot is not None:
                await page.screenshot(path=str(screenshot), full_page=True)
        finally:
            await browser.close()
    return check
