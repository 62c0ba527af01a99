"""Run the ingest app under a real uvicorn server in a thread (or as a real process, as
`python -m services.ingest`), and read back what it published."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from scripts.stack.kafka import REPO_ROOT
from scripts.stack.procs import free_port
from services.ingest.config import (
    IngestConfig,
    IngestSettings,
    LimitsConfig,
    RateLimitConfig,
    ResolvedConfig,
    SourceConfig,
    resolve_keys,
)
from services.ingest.fast_path import IngestApp
from services.ingest.main import create_app

WRITE_KEY = "test-write-key"
DISABLED_KEY = "disabled-write-key"


def basic_auth(key: str = WRITE_KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + b64encode(f"{key}:".encode()).decode()}


def make_settings(bootstrap: str, topic: str, **overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "ingest_events_topic": topic,
        "ingest_workers": 1,
        "ingest_produce_timeout_seconds": 5.0,
        "ingest_unavailable_retry_after_seconds": 1,
        "ingest_probe_interval_seconds": 0.2,
        **overrides,
    }
    return IngestSettings(**values)


def make_config(
    limits: LimitsConfig | None = None, rate_limit: RateLimitConfig | None = None
) -> ResolvedConfig:
    """Source `test` (enabled, WRITE_KEY) and `retired` (disabled, DISABLED_KEY)."""
    rules = IngestConfig(
        sources=(
            SourceConfig(id="test", write_key_env="TEST_WRITE_KEY"),
            SourceConfig(id="retired", write_key_env="RETIRED_WRITE_KEY", enabled=False),
        ),
        limits=limits or LimitsConfig(),
        rate_limit=rate_limit or RateLimitConfig(),
    )
    environ = {"TEST_WRITE_KEY": WRITE_KEY, "RETIRED_WRITE_KEY": DISABLED_KEY}
    return resolve_keys(Path("test-ingest.yaml"), rules, environ)


@dataclass
class IngestServer:
    """The app served by uvicorn on a free port in a background thread (its own event loop)."""

    app: IngestApp
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            loop="asyncio",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="ingest-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> IngestServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the ingest server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the ingest server did not stop"


def start_server(settings: IngestSettings, config: ResolvedConfig) -> IngestServer:
    return IngestServer(create_app(settings, config)).start()


@dataclass
class IngestProcess:
    """`python -m services.ingest` (source `dev`, key WRITE_KEY) with its output in `log`."""

    bootstrap: str
    topic: str
    log: Path
    workers: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 60) -> IngestProcess:
        """Start it and wait until `/ready` says 200."""
        env = {
            **os.environ,
            "USEROPS_KAFKA_BOOTSTRAP": self.bootstrap,
            "USEROPS_INGEST_PORT": str(self.port),
            "USEROPS_INGEST_WORKERS": str(self.workers),
            "USEROPS_INGEST_EVENTS_TOPIC": self.topic,
            "USEROPS_DEV_WRITE_KEY": WRITE_KEY,
            **self.extra_env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.ingest"],
            env=env,
            cwd=REPO_ROOT,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"ingest exited {self.proc.returncode}:\n{self.tail()}")
                try:
                    if (await client.get("/ready")).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"ingest not ready within {timeout}s:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout)


async def read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record in `topic` up to its end offsets at the time of the call."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    tps = [TopicPartition(topic, p["partition"]) for p in description["partitions"]]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        ends: Mapping[TopicPartition, int] = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = asyncio.get_running_loop().time() + 30
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert asyncio.get_running_loop().time() < deadline, "could not read the topic"
            batch = await consumer.getmany(*tps, timeout_ms=500)
            for messages in batch.values():
                records.extend(messages)
        return records
    finally:
        await consumer.stop()


def values(records: list[ConsumerRecord[bytes, bytes]]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records if r.value is not None]
