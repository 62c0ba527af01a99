"""Run the real notifier (`python -m services.notifier`) as a subprocess against the test stack,
with the local sinks (`scripts.stack.sinks`) in-process as its webhook receiver and SMTP server."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from scripts.stack.kafka import REPO_ROOT
from scripts.stack.procs import free_port
from services.notifier.adapters.inbox_tokens import InboxTokens
from shared.contracts.lifecycle import StageChanged
from shared.events import format_ts
from shared.kafka import create_producer

ADMIN_TOKEN = "test-admin-token"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
UNSUBSCRIBE_SECRET = "u" * 32
INBOX_SECRET = "i" * 32


def inbox_token(user_id: str) -> str:
    return InboxTokens(INBOX_SECRET.encode()).mint(user_id, datetime.now(UTC))


@dataclass
class NotifierProcess:
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
            [sys.executable, "-m", "services.notifier"],
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
                        f"notifier exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                    )
                try:
                    if (await client.get(f"{self.url}/ready")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"notifier not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def client(self, token: str = ADMIN_TOKEN) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    async def get(self, path: str, **params: Any) -> Any:
        async with self.client() as c:
            r = await c.get(path, params=params)
            r.raise_for_status()
            return r.json()


def notifier_env(
    *,
    bootstrap: str,
    db_url: str,
    topics: dict[str, str],
    config: Path,
    group: str,
    smtp_port: int,
    port: int | None = None,
    extra: dict[str, str] | None = None,
) -> tuple[dict[str, str], int]:
    port = port or free_port()
    env = {
        **os.environ,
        "USEROPS_KAFKA_BOOTSTRAP": bootstrap,
        "USEROPS_NOTIFIER_DATABASE_URL": db_url,
        "USEROPS_NOTIFIER_PORT": str(port),
        "USEROPS_NOTIFIER_CONFIG": str(config),
        "USEROPS_NOTIFIER_GROUP": group,
        "USEROPS_ADMIN_TOKEN": ADMIN_TOKEN,
        "USEROPS_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "USEROPS_UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET,
        "USEROPS_INBOX_SECRET": INBOX_SECRET,
        "USEROPS_SMTP_HOST": "127.0.0.1",
        "USEROPS_SMTP_PORT": str(smtp_port),
        "USEROPS_SMTP_FROM": "userops <no-reply@notify.test>",
        "USEROPS_WEBHOOK_TIMEOUT": "2",
        "USEROPS_WEBHOOK_BACKOFF_INITIAL": "0.5",
        "USEROPS_WEBHOOK_BACKOFF_MAX": "2",
        "USEROPS_WEBHOOK_MAX_ATTEMPTS": "4",
        "USEROPS_EMAIL_BACKOFF_INITIAL": "0.5",
        "USEROPS_EMAIL_BACKOFF_MAX": "2",
        "USEROPS_EVENTS_TOPIC": topics["userops.events.v1"],
        "USEROPS_LIFECYCLE_TOPIC": topics["userops.lifecycle.v1"],
        "USEROPS_REWARDS_TOPIC": topics["userops.rewards.v1"],
        "USEROPS_DELIVERIES_TOPIC": topics["userops.deliveries.v1"],
        "USEROPS_DEADLETTER_TOPIC": topics["userops.deadletter.v1"],
        "USEROPS_LOG_LEVEL": "WARNING",
        **(extra or {}),
    }
    return env, port


def track(user: str, event: str, *, mid: str, ts: datetime | None = None, **fields: Any) -> dict[str, Any]:
    stamp = format_ts(ts or datetime.now(UTC))
    return {
        "type": "track",
        "event": event,
        "messageId": mid,
        "userId": user,
        "timestamp": stamp,
        "receivedAt": format_ts(datetime.now(UTC)),
        "originalTimestamp": stamp,
        **fields,
    }


def identify(
    user: str, *, mid: str, traits: dict[str, Any], context: dict[str, Any] | None = None
) -> dict[str, Any]:
    stamp = format_ts(datetime.now(UTC))
    return {
        "type": "identify",
        "messageId": mid,
        "userId": user,
        "traits": traits,
        "context": context or {},
        "timestamp": stamp,
        "receivedAt": stamp,
        "originalTimestamp": stamp,
    }


def stage_changed(
    user: str, to: str, *, rid: str, frm: str | None = None, activated: bool = False
) -> dict[str, Any]:
    return StageChanged.model_validate(
        {
            "id": rid,
            "userId": user,
            "at": datetime.now(UTC),
            "configVersion": "test",
            "from": frm,
            "to": to,
            "reason": "test",
            "activated": activated,
        }
    ).to_wire()


async def produce(bootstrap: str, topic: str, records: Sequence[dict[str, Any]]) -> None:
    producer = create_producer(bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = []
        for r in records:
            key = str(r.get("userId") or r.get("anonymousId")).encode()
            futures.append(await producer.send(topic, orjson.dumps(r), key=key))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
