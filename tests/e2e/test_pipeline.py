"""The whole pipeline as a product team uses it: a real Segment SDK → ingest → Kafka → segmenter API."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx

from scripts.stack.kafka import REPO_ROOT
from scripts.stack.procs import free_port
from tests.conftest import Stack, eventually, unique
from tests.integration.segmenter.harness import SegmenterProcess, segmenter_env

WRITE_KEY = "e2e-write-key"


async def _ingest(stack: Stack, topics: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **segmenter_env(
            bootstrap=stack.bootstrap, db_url="unused", topics=topics, config=Path("unused"), group="unused"
        )[0],
        "USEROPS_INGEST_PORT": str(port),
        "USEROPS_INGEST_WORKERS": "1",
        "USEROPS_INGEST_EVENTS_TOPIC": topics["userops.events.v1"],
        "USEROPS_DEV_WRITE_KEY": WRITE_KEY,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.ingest"],
        env=env,
        cwd=REPO_ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    async def ready() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            async with httpx.AsyncClient() as c:
                return (await c.get(f"{url}/ready")).status_code == 200
        except httpx.TransportError:
            return False

    await eventually(ready, timeout=60)
    return proc, url


async def test_segment_sdk_events_become_lifecycle_stages(
    stack: Stack, topics: dict[str, str], database: str, tmp_path: Path
) -> None:
    from segment.analytics import Client

    ingest, ingest_url = await _ingest(stack, topics, tmp_path / "ingest.log")
    env, port = segmenter_env(
        bootstrap=stack.bootstrap,
        db_url=database,
        topics=topics,
        config=REPO_ROOT / "config" / "segmenter.yaml",
        group=unique("e2e"),
    )
    segmenter = SegmenterProcess(env, port, tmp_path / "segmenter.log")
    segmenter.start()
    try:
        await segmenter.wait_ready()
        client = Client(WRITE_KEY, host=ingest_url, sync_mode=True)
        # An anonymous visitor browses, signs up (identify links the ids), then buys.
        client.page(anonymous_id="anon-1", name="Pricing")
        client.identify(
            "ada",
            {"email": "ada@example.com", "plan": "pro", "timezone": "Europe/Paris"},
            anonymous_id="anon-1",
        )
        client.track("ada", "Order Completed", {"revenue": 99})
        # A second user who only signs up.
        client.track("bob", "Signed Up")
        await asyncio.to_thread(client.flush)

        async def both() -> dict[str, str] | None:
            page = await segmenter.get("/v1/users")
            stages = {u["userId"]: u["stage"] for u in page["users"]}
            return stages if {"ada", "bob"} <= stages.keys() and stages["ada"] == "activated" else None

        stages = await eventually(both, timeout=30)
        assert stages == {"ada": "activated", "bob": "new"}  # anon-1 was merged into ada
        ada = await segmenter.get("/v1/users/ada")
        assert ada["profile"]["traits"]["plan"] == "pro"
        # The page view (keyed by anon-1) and the identify (keyed by ada) sit on different
        # partitions: either anon-1's profile is merged into ada's, or the link came first and the
        # page view went straight to ada. Both leave exactly one profile holding the history.
        assert set(ada["profile"]["aliases"]) <= {"anon-1"}
        assert ada["profile"]["orders"] == 1
        # The anonymous id now resolves to ada's profile.
        assert (await segmenter.get("/v1/users/anon-1"))["userId"] == "ada"
        counts = await segmenter.get("/v1/stages")
        assert counts["total"] == 2
        async with httpx.AsyncClient() as c:
            ingest_metrics = (await c.get(f"{ingest_url}/metrics")).text
            seg_metrics = (await c.get(f"{segmenter.url}/metrics")).text
        assert 'userops_ingest_events_accepted_total{type="track"}' in ingest_metrics
        assert "userops_consumer_messages_processed_total{consumer=" in seg_metrics
        assert "ada" not in ingest_metrics + seg_metrics  # no user ids in metrics
    finally:
        segmenter.terminate()
        ingest.terminate()
        ingest.wait(30)
