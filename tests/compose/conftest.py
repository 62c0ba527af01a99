"""The compose stack, really started: docker-compose.yml with deploy/test/compose.test.yml.

Run by `make test-compose` only (deploy/test/prepare.sh first installs the engine and builds the
images); `make test` ignores this folder, and a plain `pytest` skips it unless
USEROPS_COMPOSE_TEST=1. The stack runs under its own compose project name, so it never touches
a developer's `userops` project; whatever an earlier run left behind is removed first.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import pytest

REPO: Final = Path(__file__).resolve().parents[2]
PROJECT: Final = "userops-compose-test"
FILES: Final = ("docker-compose.yml", "deploy/test/compose.test.yml")
ADMIN_TOKEN: Final = "compose-test-admin-token"
WRITE_KEY: Final = "compose-test-write-key"
WEBHOOK_SECRET: Final = "whsec_Y29tcG9zZS10ZXN0LXdlYmhvb2stc2lnbmluZy1rZXk="
UP_TIMEOUT: Final = 420

T = TypeVar("T")


def docker_client() -> str:
    """Debian's client builds and composes without the buildx plugin; else the one on PATH."""
    return os.environ.get("USEROPS_DOCKER") or (
        "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("USEROPS_COMPOSE_TEST") == "1":
        return
    skip = pytest.mark.skip(reason="needs a Docker engine: run `make test-compose`")
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(skip)


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 120.0, every: float = 1.0) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` and the last error."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except Exception as exc:  # the stack is still coming up: keep polling
            last = exc
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(every)


def free_ports(count: int = 1) -> int:
    """The first of `count` consecutive ports free on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = int(s.getsockname()[1])
        if first + count > 65535:
            continue
        try:
            for port in range(first, first + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {count} consecutive free ports on 127.0.0.1")


@dataclass
class Compose:
    """`docker compose` on the test project, with the environment the stack is started with.

    Host ports are free ones picked once per run (deploy/test/compose.test.yml reads them)."""

    docker: str = field(default_factory=docker_client)
    ports: dict[str, int] = field(
        default_factory=lambda: {
            s: free_ports() for s in ("ingest", "rewards", "notifier", "prometheus", "sink")
        }
    )
    segmenter_ports: int = field(default_factory=lambda: free_ports(4))

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("USEROPS_", "COMPOSE_"))}
        env.update(
            USEROPS_ADMIN_TOKEN=ADMIN_TOKEN,
            USEROPS_DEV_WRITE_KEY=WRITE_KEY,
            USEROPS_WEBHOOK_SECRET=WEBHOOK_SECRET,
            COMPOSE_PROJECT_NAME=PROJECT,
            USEROPS_TEST_SEGMENTER_PORTS=f"{self.segmenter_ports}-{self.segmenter_ports + 3}",
        )
        env.update({f"USEROPS_TEST_{s.upper()}_PORT": str(p) for s, p in self.ports.items()})
        return env

    def run(self, *args: str, check: bool = True, timeout: float = UP_TIMEOUT) -> str:
        cmd = [self.docker, "compose", "-p", PROJECT, *(a for f in FILES for a in ("-f", f)), *args]
        started = time.monotonic()
        done = subprocess.run(
            cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        print(f"compose {' '.join(args)}: {time.monotonic() - started:.1f}s", file=sys.stderr)
        if check and done.returncode != 0:
            pytest.fail(f"`docker compose {' '.join(args)}` exited {done.returncode}:\n{done.stderr[-4000:]}")
        return done.stdout

    def up(self, *args: str) -> None:
        self.run("up", "-d", "--wait", "--wait-timeout", str(UP_TIMEOUT), *args)

    def containers(self) -> list[dict[str, Any]]:
        """Every container of the project (`ps -a`), as compose reports it."""
        out = self.run("ps", "-a", "--format", "json").strip()
        if out.startswith("["):
            return list(json.loads(out))
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def port(self, service: str, port: int, index: int = 1) -> str:
        """host:port published for `port` of replica `index` of `service`."""
        return self.run("port", "--index", str(index), service, str(port)).strip()

    def volumes(self) -> set[str]:
        out = subprocess.run(
            [self.docker, "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return set(out.split())

    def diagnose(self) -> None:
        """What a failed run needs: the containers' states and the last log lines."""
        print(self.run("ps", "-a", check=False), file=sys.stderr)
        print(self.run("logs", "--no-color", "--tail", "40", check=False)[-20000:], file=sys.stderr)


@pytest.fixture(scope="session")
def compose() -> Iterator[Compose]:
    if shutil.which(docker_client()) is None:
        pytest.fail("no docker client: run `make test-compose`, which installs the engine")
    c = Compose()
    c.run("down", "-v", "--remove-orphans", "--timeout", "5")  # a stack left by an earlier run
    try:
        c.up()
        yield c
    except BaseException:
        c.diagnose()
        raise
    finally:
        c.run("down", "-v", "--remove-orphans", "--timeout", "10", check=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    compose = getattr(item, "funcargs", {}).get("compose")
    if report.when == "call" and report.failed and isinstance(compose, Compose):
        compose.diagnose()
    return report
