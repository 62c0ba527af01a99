"""Run the real segmenter (`python -m services.segmenter`) as a subprocess against the test stack."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from scripts.stack.kafka import REPO_ROOT
from scripts.stack.procs import free_port
from shared.events import format_ts
from shared.kafka import create_producer

ADMIN_TOKEN = "test-admin-token"


@dataclass
class SegmenterProcess:
    env: dict[str, str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.segmenter"],
            env=self.env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, timeout: float = 60) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient() as client:
            while loop.time() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"segmenter exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                    )
                try:
                    if (await client.get(f"{self.url}/ready")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"segmenter not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    async def get(self, path: str, **params: Any) -> Any:
        async with httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as c:
            r = await c.get(path, params=params)
            r.raise_for_status()
            return r.json()


def segmenter_env(
    *,
    bootstrap: str,
    db_url: str,
    topics: dict[str, str],
    config: Path,
    group: str,
    port: int | None = None,
    extra: dict[str, str] | None = None,
) -> tuple[dict[str, str], int]:
    port = port or free_port()
    env = {
        **os.environ,
        "USEROPS_KAFKA_BOOTSTRAP": bootstrap,
        "USEROPS_SEGMENTER_DATABASE_URL": db_url,
        "USEROPS_SEGMENTER_PORT": str(port),
        "USEROPS_SEGMENTER_CONFIG": str(config),
        "USEROPS_SEGMENTER_GROUP": group,
        "USEROPS_ADMIN_TOKEN": ADMIN_TOKEN,
        "USEROPS_EVENTS_TOPIC": topics["userops.events.v1"],
        "USEROPS_LIFECYCLE_TOPIC": topics["userops.lifecycle.v1"],
        "USEROPS_DEADLETTER_TOPIC": topics["userops.deadletter.v1"],
        "USEROPS_LOG_LEVEL": "WARNING",
        **(extra or {}),
    }
    return env, port


def wire_event(
    user: str, event: str | None, ts: Any, *, mid: str, etype: str = "track", **fields: Any
) -> dict[str, Any]:
    """An event as ingest publishes it."""
    stamp = format_ts(ts)
    body: dict[str, Any] = {
        "type": etype,
        "messageId": mid,
        "userId": user,
        "timestamp": stamp,
        "receivedAt": stamp,
        "originalTimestamp": stamp,
        **fields,
    }
    if event is not None:
        body["event"] = event
    return body


async def produce_events(bootstrap: str, topic: str, events: Sequence[dict[str, Any] | bytes]) -> None:
    producer = create_producer(bootstrap, linger_ms=20)
    await producer.start()
    try:
        futures = []
        for e in events:
            if isinstance(e, bytes):
                futures.append(await producer.send(topic, e, key=b"poison"))
            else:
                key = str(e.get("userId") or e.get("anonymousId")).encode()
                futures.append(await producer.send(topic, orjson.dumps(e), key=key))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
