"""`python -m services.ingest` as operators run it: config checks at start, several workers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from scripts.stack.kafka import REPO_ROOT
from scripts.stack.procs import free_port
from tests.conftest import Stack, eventually
from tests.integration.ingest.harness import WRITE_KEY, basic_auth, read_topic


def service_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USEROPS_", "PROMETHEUS_"))}
    return {**env, "USEROPS_LOG_LEVEL": "INFO", **extra}


def run_to_exit(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.ingest"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_invalid_config_file_stops_the_start_naming_file_and_field(tmp_path: Path) -> None:
    config = tmp_path / "ingest.yaml"
    config.write_text("sources:\n  - {id: web, write_key_env: WEB_KEY, colour: blue}\n")
    result = run_to_exit(service_env(USEROPS_INGEST_CONFIG=str(config), WEB_KEY="k"))
    assert result.returncode == 2
    assert f"{config}: field 'sources[0].colour': Extra inputs are not permitted" in result.stderr


def test_an_unset_write_key_variable_stops_the_start_naming_it() -> None:
    result = run_to_exit(service_env())  # the shipped config, without USEROPS_DEV_WRITE_KEY
    assert result.returncode == 2
    assert "sources[0].write_key_env" in result.stderr
    assert "USEROPS_DEV_WRITE_KEY" in result.stderr


@pytest.fixture
def two_workers(stack: Stack, topics: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, str]]:
    port = free_port()
    topic = topics["userops.events.v1"]
    env = service_env(
        USEROPS_KAFKA_BOOTSTRAP=stack.bootstrap,
        USEROPS_INGEST_PORT=str(port),
        USEROPS_INGEST_WORKERS="2",
        USEROPS_INGEST_EVENTS_TOPIC=topic,
        USEROPS_DEV_WRITE_KEY=WRITE_KEY,
    )
    log = tmp_path / "ingest.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.ingest"],
        env=env,
        cwd=REPO_ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}", topic
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert WRITE_KEY not in text  # no write keys in logs, also not from ?writeKey= URLs
    assert "metrics-user" not in text


async def test_two_workers_serve_and_metrics_add_up_across_them(
    stack: Stack, two_workers: tuple[str, str]
) -> None:
    url, topic = two_workers

    async def ready() -> bool:
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                return (await client.get("/ready")).status_code == 200
        except httpx.TransportError:
            return False

    await eventually(ready, timeout=60)
    requests = 40
    for i in range(requests):
        # A new connection each time, so both workers take some of the requests.
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.post(
                "/v1/track",
                params={"writeKey": WRITE_KEY} if i % 2 else None,
                headers=None if i % 2 else basic_auth(),
                content=orjson.dumps({"userId": f"metrics-user-{i}", "event": "E"}),
            )
            assert response.status_code == 200
    assert len(await read_topic(stack.bootstrap, topic)) == requests

    for _ in range(6):
        async with httpx.AsyncClient(base_url=url) as client:
            text = (await client.get("/metrics")).text
        accepted = re.search(r'userops_ingest_events_accepted_total\{type="track"\} (\S+)', text)
        assert accepted is not None
        assert float(accepted.group(1)) == requests  # whichever worker answers the scrape
    assert "metrics-user" not in text
