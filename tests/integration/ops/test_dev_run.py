"""`make run`'s supervisor over the real ingest and segmenter on the test stack.

The segmenter is killed with SIGKILL while events stream in through ingest: ingest keeps
answering 200 throughout, the segmenter is restarted, and, because each local replica has a
stable instance id, the restarted one takes its partitions back at once and applies the events
sent while it was down well before the 30 s session of its old self would have expired.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from scripts.stack.procs import free_port
from scripts.stack.restart import RestartPolicy
from scripts.stack.services import instance_id, service_env, service_specs
from scripts.stack.settings import StackSettings
from scripts.stack.supervisor import Supervisor
from shared import topics as t
from tests.conftest import Stack, eventually

WRITE_KEY = "ops-write-key"
TOKEN = "ops-admin-token"
SESSION_TIMEOUT_S = 30  # the segmenter's default session timeout


@pytest.fixture
async def supervised(
    stack: Stack, topics: dict[str, str], database: str, tmp_path: Path
) -> AsyncIterator[tuple[Supervisor, StackSettings, list[str]]]:
    settings = StackSettings(
        home=tmp_path,
        kafka_port=stack.kafka.port,
        pg_port=stack.postgres.port,
        ingest_port=free_port(),
        segmenter_port=free_port(),
    )
    env = service_env(settings, os.environ, ("ingest", "segmenter"))
    env.update(
        {
            "USEROPS_DEV_WRITE_KEY": WRITE_KEY,
            "USEROPS_ADMIN_TOKEN": TOKEN,
            "USEROPS_INGEST_WORKERS": "1",
            "USEROPS_INGEST_EVENTS_TOPIC": topics[t.EVENTS],
            "USEROPS_EVENTS_TOPIC": topics[t.EVENTS],
            "USEROPS_LIFECYCLE_TOPIC": topics[t.LIFECYCLE],
            "USEROPS_DEADLETTER_TOPIC": topics[t.DEADLETTER],
            "USEROPS_SEGMENTER_DATABASE_URL": database,
            "USEROPS_SEGMENTER_GROUP": f"segmenter-{uuid.uuid4().hex[:8]}",
            "USEROPS_LOG_LEVEL": "WARNING",
        }
    )
    specs = [s for s in service_specs(settings, env) if s.name in {"ingest", "segmenter"}]
    said: list[str] = []
    sup = Supervisor(
        specs, policy=RestartPolicy(initial=0.5, maximum=2.0), say=said.append, sink=io.BytesIO()
    )
    sup.start()
    try:
        failure = await asyncio.to_thread(sup.wait_ready, 120.0)
        assert failure is None, failure.describe()
        yield sup, settings, said
    finally:
        await asyncio.to_thread(sup.stop, 30.0)


async def test_segmenter_killed_mid_stream_is_restarted_and_catches_up_while_ingest_keeps_serving(
    supervised: tuple[Supervisor, StackSettings, list[str]],
) -> None:
    sup, settings, said = supervised
    assert (
        sup.specs["segmenter"].env["USEROPS_SEGMENTER_INSTANCE_ID"]
        == instance_id("segmenter")
        == "local-segmenter-0"
    )
    ingest = f"http://127.0.0.1:{settings.ingest_port}"
    segmenter = f"http://127.0.0.1:{settings.segmenter_port}"
    stop_sending = asyncio.Event()
    sent: list[str] = []
    statuses: list[int] = []

    async def stream() -> None:
        async with httpx.AsyncClient(base_url=ingest, auth=(WRITE_KEY, ""), timeout=10) as client:
            i = 0
            while not stop_sending.is_set():
                user = f"ops-{uuid.uuid4().hex[:6]}-{i}"
                r = await client.post("/v1/track", json={"userId": user, "event": "Signed Up"})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    sent.append(user)
                i += 1
                await asyncio.sleep(0.02)

    sup_stop = threading.Event()
    supervising = asyncio.create_task(asyncio.to_thread(sup.run, sup_stop, 0.1))
    sender = asyncio.create_task(stream())
    try:
        await eventually(lambda: len(sent) >= 20, timeout=30)
        old = sup.procs["segmenter"].pid
        os.kill(old, signal.SIGKILL)
        await eventually(lambda: sup.procs["segmenter"].pid != old, timeout=20)
        restarted_at = asyncio.get_running_loop().time()
        n_after_restart = len(sent)
        await eventually(lambda: len(sent) >= n_after_restart + 20, timeout=30)  # ingest still serves
        stop_sending.set()
        await sender

        async with httpx.AsyncClient(
            base_url=segmenter, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as admin:

            async def all_applied() -> bool:
                try:
                    for user in sent[-40:]:  # sent after the kill, mostly after the restart
                        if (await admin.get(f"/v1/users/{user}")).status_code != 200:
                            return False
                except httpx.TransportError:  # the new process is not listening yet
                    return False
                return True

            await eventually(all_applied, timeout=SESSION_TIMEOUT_S - 8, interval=0.5)
        caught_up_after = asyncio.get_running_loop().time() - restarted_at
    finally:
        stop_sending.set()
        sup_stop.set()
        await asyncio.gather(sender, supervising, return_exceptions=True)
    assert set(statuses) == {200}, f"ingest answered {sorted(set(statuses))} while the segmenter was down"
    assert caught_up_after < SESSION_TIMEOUT_S - 5
    assert any(line.startswith("segmenter exited with -9; restarting in") for line in said), said
    assert sup.state["segmenter"].restarts == 1
    assert sup.state["ingest"].restarts == 0
