"""`userops report` against the four real services (Kafka and PostgreSQL underneath): the data it
reads matches what the services hold, the page renders in Chromium, and a service that is down or
refuses the token is named."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from scripts.report.browser import ChromiumMissing, chromium_path
from scripts.report.data import Missing
from scripts.report.fetch import Endpoints, ServiceError, fetch_report
from scripts.report.render import render
from scripts.stack.kafka import REPO_ROOT
from scripts.stack.procs import free_port
from tests.conftest import Stack
from tests.integration.ops.live_stack import WRITE_KEY, LiveStack, start_live_stack, stop_live_stack

pytestmark = pytest.mark.integration

USERS = [f"report-u{i}" for i in range(6)]
NPS = {"report-u0": 10, "report-u1": 9, "report-u2": 3}


def _events() -> list[dict[str, Any]]:
    batch: list[dict[str, Any]] = []
    for i, user in enumerate(USERS):
        batch.append({"type": "track", "userId": user, "event": "Signed Up"})
        batch.append({"type": "track", "userId": user, "event": "Lesson Completed"})
        if i % 2 == 0:
            batch.append(
                {"type": "track", "userId": user, "event": "Order Completed", "properties": {"revenue": 20}}
            )
    for user, score in NPS.items():
        batch.append(
            {"type": "track", "userId": user, "event": "NPS Submitted", "properties": {"score": score}}
        )
    return batch


async def _until(what: str, check: Any, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
async def live(stack: Stack) -> AsyncIterator[LiveStack]:
    running = await start_live_stack(stack)
    try:
        env = running.cli_env
        headers = {"Authorization": f"Bearer {env['USEROPS_ADMIN_TOKEN']}"}
        async with httpx.AsyncClient(headers=headers, timeout=10) as http:
            sent = await http.post(
                running.urls["ingest"] + "/v1/batch", auth=(WRITE_KEY, ""), json={"batch": _events()}
            )
            assert sent.status_code == 200, sent.text

            async def profiled() -> bool:
                r = await http.get(running.urls["segmenter"] + "/v1/stages")
                return r.status_code == 200 and r.json()["total"] == len(USERS)

            async def answered() -> bool:
                r = await http.get(running.urls["segmenter"] + "/v1/analytics/nps", params={"weeks": 1})
                return r.status_code == 200 and r.json()["weeks"][-1]["responses"] == len(NPS)

            async def awarded() -> bool:
                r = await http.get(running.urls["rewards"] + f"/v1/users/{USERS[0]}")
                return r.status_code == 200

            await _until("the segmenter's profiles", profiled)
            await _until("the segmenter's NPS answers", answered)
            await _until("the rewards account", awarded)
        yield running
    finally:
        await stop_live_stack(stack, running)


def _endpoints(live: LiveStack, **override: str) -> Endpoints:
    return Endpoints.from_env({**live.cli_env, **override})


async def test_the_report_reads_what_the_services_hold(live: LiveStack) -> None:
    data = await fetch_report(_endpoints(live), now=datetime.now(UTC), weeks=4, days=7)
    assert not isinstance(data.stages, Missing) and not isinstance(data.funnel, Missing)
    assert sum(data.stages[-1].counts.values()) == len(USERS)
    assert sum(data.stages[0].counts.values()) == 0  # three weeks ago nobody had been seen
    steps = {s.name: s.users for s in data.funnel.steps}
    assert steps["first seen"] == len(USERS)
    assert steps["activated"] == 3  # the users with an order
    assert not isinstance(data.nps, Missing)
    assert (data.nps[-1].promoters, data.nps[-1].detractors, data.nps[-1].nps) == (2, 1, 33.3)
    assert not isinstance(data.active, Missing) and data.active[-1].dau == len(USERS)
    assert not isinstance(data.retention, Missing) and data.retention[-1].size == len(USERS)
    assert not isinstance(data.core, Missing) and data.core.mau == len(USERS)
    assert not isinstance(data.economy, Missing)
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {live.cli_env['USEROPS_ADMIN_TOKEN']}"}
    ) as http:
        budgets = (await http.get(live.urls["rewards"] + "/v1/budgets")).json()
        campaigns = (await http.get(live.urls["notifier"] + "/v1/campaigns")).json()
    assert [b.rule_id for b in data.economy.budgets] == [b["ruleId"] for b in budgets]
    if data.economy.totals is not None:
        assert data.economy.totals.awarded > 0
    assert not isinstance(data.campaigns, Missing)
    assert [c.name for c in data.campaigns] == [c["name"] for c in campaigns]


async def test_a_service_that_is_down_is_named_or_marked_unavailable(live: LiveStack) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    endpoints = _endpoints(live, USEROPS_NOTIFIER_URL=gone)
    with pytest.raises(ServiceError) as caught:
        await fetch_report(endpoints, now=datetime.now(UTC), weeks=2, days=7)
    assert caught.value.service == "notifier" and caught.value.url == gone
    assert str(caught.value).startswith(f"notifier at {gone}: not reachable")

    data = await fetch_report(endpoints, now=datetime.now(UTC), weeks=2, days=7, allow_missing=True)
    assert isinstance(data.campaigns, Missing) and data.campaigns.url == gone
    assert not isinstance(data.economy, Missing) and not isinstance(data.stages, Missing)
    html = render(data)
    assert 'data-unavailable="campaigns"' in html and html.count("data-unavailable=") == 1


async def test_a_wrong_token_is_named(live: LiveStack) -> None:
    with pytest.raises(
        ServiceError, match=r"segmenter at http://127\.0\.0\.1:\d+: refused the admin token \(HTTP 401\)"
    ):
        await fetch_report(
            _endpoints(live, USEROPS_ADMIN_TOKEN="wrong"), now=datetime.now(UTC), weeks=2, days=7
        )


def test_the_command_writes_a_page_that_renders_offline(live: LiveStack, tmp_path: Path) -> None:
    try:
        chromium_path()
    except ChromiumMissing as exc:
        pytest.skip(str(exc))
    out, png = tmp_path / "report.html", tmp_path / "report.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.cli",
            "report",
            "--out",
            str(out),
            "--screenshot",
            str(png),
            "--weeks",
            "4",
        ],
        env={**os.environ, **live.cli_env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())
    assert f"saved {png}:" in said and "charts drawn, no network, no script errors" in said
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "data-unavailable" not in out.read_text(encoding="utf-8")


async def test_a_url_that_is_not_the_service_is_named(live: LiveStack) -> None:
    wrong = live.urls["notifier"]  # the notifier has no /v1/stages
    with pytest.raises(ServiceError, match=r"GET /v1/stages answered HTTP 404") as caught:
        await fetch_report(
            _endpoints(live, USEROPS_SEGMENTER_URL=wrong), now=datetime.now(UTC), weeks=2, days=7
        )
    assert (caught.value.service, caught.value.url) == ("segmenter", wrong)
