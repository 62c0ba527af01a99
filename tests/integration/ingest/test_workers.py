"""`python -m services.ingest` with several workers: each on its own SO_REUSEPORT socket, so a
burst of connections is spread over all of them, and a worker that dies takes the service down
(non-zero) instead of leaving it running at half capacity."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.stack.kafka import REPO_ROOT
from scripts.stack.procs import free_port
from tests.conftest import eventually
from tests.integration.ingest.harness import WRITE_KEY


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def workers(self) -> list[int]:
        text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return [int(pid) for pid in text.split()]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    """Two workers; no broker is needed to accept connections (`/ready` would say 503)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USEROPS_", "PROMETHEUS_"))}
    env.update(
        USEROPS_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
        USEROPS_INGEST_PORT=str(port),
        USEROPS_INGEST_WORKERS="2",
        USEROPS_DEV_WRITE_KEY=WRITE_KEY,
        USEROPS_LOG_LEVEL="INFO",
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
        yield Service(proc, port, log)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def accepted_by(pid: int, port: int) -> int:
    """Established connections to `port` that the process `pid` holds (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    established = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == "01" and fields[9] in inodes:
            established += 1
    return established


def gone(pid: int) -> bool:
    """The process ended (or is a zombie awaiting its parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def started(service: Service) -> bool:
    return service.log.read_text().count("Application startup complete") == 2


async def test_a_burst_of_connections_is_spread_over_both_workers(service: Service) -> None:
    await eventually(lambda: started(service), timeout=60)
    workers = service.workers()
    assert len(workers) == 2
    clients = [socket.create_connection(("127.0.0.1", service.port)) for _ in range(64)]
    try:

        def counts() -> list[int] | None:
            found = [accepted_by(w, service.port) for w in workers]
            return found if sum(found) == len(clients) else None

        per_worker = await eventually(counts, timeout=30)
        # A hash spread gives about 32 each; with one shared socket one worker took them all.
        assert min(per_worker) >= 12, per_worker
    finally:
        for c in clients:
            c.close()
    service.proc.terminate()
    assert service.proc.wait(timeout=30) == 0, service.log.read_text()[-3000:]
    assert all(gone(pid) for pid in workers)


async def test_a_worker_killed_takes_the_service_down_with_a_non_zero_exit(service: Service) -> None:
    await eventually(lambda: started(service), timeout=60)
    victim, survivor = service.workers()
    os.kill(victim, signal.SIGKILL)
    assert service.proc.wait(timeout=30) != 0
    assert "ingest_worker_exited" in service.log.read_text()
    assert gone(survivor)
