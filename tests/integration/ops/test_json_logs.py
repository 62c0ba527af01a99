"""Every line a service writes is one JSON object, uvicorn's and aiokafka's and tracebacks included.

Runs the real services as processes against dependencies that are down (a closed database port,
a closed Kafka port), which is when the libraries log the most, and parses all of their output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

from scripts.stack.kafka import REPO_ROOT
from scripts.stack.procs import free_port
from shared.logging import QUIET_LOGGERS
from tests.conftest import eventually

FIELDS = {"event", "level", "logger", "timestamp", "service"}


def parse_lines(output: str, service: str) -> list[dict[str, Any]]:
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines, "the service printed nothing"
    parsed = []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line[:300]!r}") from None
        assert isinstance(obj, dict), line
        assert obj.keys() >= FIELDS, f"missing {FIELDS - obj.keys()} in {line[:300]}"
        assert obj["service"] == service
        parsed.append(obj)
    return parsed


def service_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("USEROPS_")}
    return {**env, "USEROPS_ADMIN_TOKEN": "t", "USEROPS_DEV_WRITE_KEY": "k", **extra}


def test_segmenter_failing_to_reach_its_database_logs_only_json() -> None:
    env = service_env(
        USEROPS_PG_PORT=str(free_port()),
        USEROPS_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
        USEROPS_SEGMENTER_PORT=str(free_port()),
    )
    done = subprocess.run(
        [sys.executable, "-m", "services.segmenter"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    lines = parse_lines(done.stdout + done.stderr, "segmenter")
    loggers = {line["logger"] for line in lines}
    assert "uvicorn.error" in loggers
    errors = [line for line in lines if line["level"] in {"error", "critical"}]
    assert not any(line["event"].startswith("Traceback") for line in lines), "a traceback is a field"
    assert any(line.get("exception", "").startswith("Traceback") for line in errors), errors
    assert any("Connect" in json.dumps(line) or "refused" in json.dumps(line) for line in errors), errors


async def test_ingest_with_kafka_down_logs_only_json_from_every_worker() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.ingest"],
        env=service_env(
            USEROPS_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
            USEROPS_INGEST_PORT=str(port),
            USEROPS_INGEST_WORKERS="2",
            USEROPS_LOG_LEVEL="DEBUG",  # aiokafka stays at WARNING even then
        ),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        import httpx

        def serving() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(serving, timeout=60)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = parse_lines(out + err, "ingest")
    started = [
        line for line in lines if line["logger"] == "uvicorn.error" and "startup complete" in line["event"]
    ]
    assert len(started) == 2, "each worker's uvicorn lines are JSON too"
    kafka_lines = [line for line in lines if line["logger"].split(".")[0] in QUIET_LOGGERS]
    assert kafka_lines, "aiokafka's own lines are routed through the JSON formatter"
    assert all(line["level"] in {"warning", "error", "critical"} for line in kafka_lines)


def test_a_stdlib_exception_is_a_field_not_a_bare_traceback() -> None:
    script = (
        "import logging\n"
        "from shared.logging import configure_logging\n"
        "configure_logging('probe')\n"
        "try:\n"
        "    raise RuntimeError('relation does not exist')\n"
        "except RuntimeError:\n"
        "    logging.getLogger('alembic.runtime.migration').exception('upgrade failed')\n"
        "logging.getLogger('sqlalchemy.engine').warning('pool %s', 'exhausted')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    first, second = parse_lines(done.stdout + done.stderr, "probe")
    assert first["logger"] == "alembic.runtime.migration"
    assert first["event"] == "upgrade failed"
    assert "RuntimeError: relation does not exist" in first["exception"]
    assert (second["logger"], second["level"], second["event"]) == (
        "sqlalchemy.engine",
        "warning",
        "pool exhausted",
    )
