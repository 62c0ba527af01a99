"""The four real services (and the local webhook/SMTP sinks) on the test's Kafka and PostgreSQL.

One call starts `python -m services.<name>` for ingest, segmenter, rewards and notifier under the
same supervisor `make run` uses, on free ports, with fresh topics, consumer groups and databases,
and waits until every one answers `/ready`. Modules share one started stack (module-scoped
fixture), because starting four services takes seconds.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import asyncpg  # type: ignore[import-untyped]

from scripts.stack.kafka import REPO_ROOT
from scripts.stack.procs import free_port
from scripts.stack.restart import RestartPolicy
from scripts.stack.supervisor import ServiceSpec, Supervisor
from scripts.stack.topics import ensure_topics
from shared import topics as t
from tests.conftest import Stack

SERVICES: Final = ("ingest", "segmenter", "rewards", "notifier")
WRITE_KEY: Final = "live-write-key"
ADMIN_TOKEN: Final = "live-admin-token"
WEBHOOK_SECRET: Final = "whsec_" + base64.b64encode(b"w" * 32).decode()

# Rules that make things happen within seconds: points expire after 15 s, holds after 1 s, the
# second lesson of a day is capped, a refund reverses its order, a budgeted sign-up bonus.
REWARDS_CONFIG: Final = """
default_timezone: UTC
expiry: {after: 15s}
holds: {ttl: 1s}
rules:
  - id: lesson_completed
    event: Lesson Completed
    points: 10
    caps: [{limit: 10, period: day}]
  - id: purchase
    event: Order Completed
    proportional: {property: revenue, points_per_unit: 1, min_amount: 1}
    reversed_by: {event: Order Refunded, match: order_id}
  - id: signup_bonus
    event: Signed Up
    points: 100
    budget: {limit: 100000, overflow: stop}
"""

# On sign-up: a webhook (to the sinks), an email (the tests point SMTP where nothing listens,
# so it fails for good after a retry) and a delayed in-app message (a timer).
NOTIFIER_CONFIG: Final = """
timezone: UTC
quiet_hours: {start: "00:00", end: "00:01"}
unsubscribe: {base_url: "http://127.0.0.1/v1/unsubscribe", ttl: 1d}
topics: [live]
endpoints:
  hooks: {url: "http://127.0.0.1:9/unused"}
campaigns:
  - name: live_hook
    topic: live
    trigger: {event: {name: Signed Up}}
    channel: webhook
    endpoint: hooks
    quiet_hours: false
    template: {payload: {hello: "{{ user_id }}"}}
  - name: live_mail
    topic: live
    trigger: {event: {name: Signed Up}}
    channel: email
    quiet_hours: false
    template: {subject: "hi", text: "hi {{ unsubscribe_url }}"}
  - name: live_inbox
    topic: live
    trigger: {event: {name: Signed Up}}
    delay: 1s
    channel: inapp
    quiet_hours: false
    template: {title: "hi", body: "welcome"}
"""

# Recount the business gauges often; emails fail fast.
LIVE_ENV: Final = {
    "USEROPS_SEGMENTER_METRICS_EVERY": "0.5",
    "USEROPS_REWARDS_METRICS_EVERY": "0.5",
    "USEROPS_SMTP_PORT": "9",
    "USEROPS_EMAIL_MAX_ATTEMPTS": "2",
    "USEROPS_EMAIL_BACKOFF_INITIAL": "0.1",
    "USEROPS_EMAIL_BACKOFF_MAX": "0.2",
}


@dataclass
class LiveStack:
    """Where the started services answer, and the environment a `userops` CLI needs to reach them."""

    urls: dict[str, str]
    sinks_url: str
    topics: dict[str, str]
    databases: dict[str, str]
    supervisor: Supervisor
    said: list[str] = field(default_factory=list)

    @property
    def cli_env(self) -> dict[str, str]:
        return {
            "USEROPS_INGEST_URL": self.urls["ingest"],
            "USEROPS_SEGMENTER_URL": self.urls["segmenter"],
            "USEROPS_REWARDS_URL": self.urls["rewards"],
            "USEROPS_NOTIFIER_URL": self.urls["notifier"],
            "USEROPS_WRITE_KEY": WRITE_KEY,
            "USEROPS_ADMIN_TOKEN": ADMIN_TOKEN,
        }


async def _create_databases(stack: Stack, names: list[str]) -> dict[str, str]:
    conn = await asyncpg.connect(stack.postgres.url())
    try:
        out = {}
        for name in names:
            db = f"live_{name}_{uuid.uuid4().hex[:8]}"
            await conn.execute(f'CREATE DATABASE "{db}"')
            out[name] = db
        return out
    finally:
        await conn.close()


async def drop_databases(stack: Stack, databases: Mapping[str, str]) -> None:
    conn = await asyncpg.connect(stack.postgres.url())
    try:
        for db in databases.values():
            await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    finally:
        await conn.close()


async def start_live_stack(
    stack: Stack, *, configs: Mapping[str, Path] | None = None, extra_env: Mapping[str, str] | None = None
) -> LiveStack:
    """Start the sinks and the four services; return once every one is ready (or raise)."""
    suffix = uuid.uuid4().hex[:8]
    names = {name: f"{name}.{suffix}" for name in t.ALL_TOPICS}
    await ensure_topics(stack.bootstrap, 3, tuple(names.values()))
    databases = await _create_databases(stack, ["segmenter", "rewards", "notifier"])
    ports = {name: free_port() for name in SERVICES}
    sink_http, sink_smtp = free_port(), free_port()
    env = {
        **os.environ,
        "USEROPS_KAFKA_BOOTSTRAP": stack.bootstrap,
        "USEROPS_PG_HOST": "127.0.0.1",
        "USEROPS_PG_PORT": str(stack.postgres.port),
        "USEROPS_LOG_LEVEL": "WARNING",
        "USEROPS_ADMIN_TOKEN": ADMIN_TOKEN,
        "USEROPS_DEV_WRITE_KEY": WRITE_KEY,
        "USEROPS_INGEST_WORKERS": "1",
        "USEROPS_INGEST_EVENTS_TOPIC": names[t.EVENTS],
        "USEROPS_EVENTS_TOPIC": names[t.EVENTS],
        "USEROPS_LIFECYCLE_TOPIC": names[t.LIFECYCLE],
        "USEROPS_REWARDS_TOPIC": names[t.REWARDS],
        "USEROPS_DELIVERIES_TOPIC": names[t.DELIVERIES],
        "USEROPS_DEADLETTER_TOPIC": names[t.DEADLETTER],
        "USEROPS_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "USEROPS_UNSUBSCRIBE_SECRET": "u" * 32,
        "USEROPS_INBOX_SECRET": "i" * 32,
        "USEROPS_SMTP_HOST": "127.0.0.1",
        "USEROPS_SMTP_PORT": str(sink_smtp),
        "USEROPS_WEBHOOK_ENDPOINTS_OVERRIDE": f"http://127.0.0.1:{sink_http}/hooks",
        "USEROPS_SINK_HTTP_PORT": str(sink_http),
        "USEROPS_SINK_SMTP_PORT": str(sink_smtp),
        "USEROPS_SINK_QUIET": "1",
        "USEROPS_SINK_MAIL_DIR": str(REPO_ROOT / ".local" / f"live-mail-{suffix}"),
        **{f"USEROPS_{n.upper()}_PORT": str(p) for n, p in ports.items()},
        **{f"USEROPS_{n.upper()}_DATABASE": db for n, db in databases.items()},
        **{f"USEROPS_{n.upper()}_GROUP": f"{n}-{suffix}" for n in ("segmenter", "rewards", "notifier")},
        **{f"USEROPS_{n.upper()}_CONFIG": str(p) for n, p in (configs or {}).items()},
        **(extra_env or {}),
    }
    for variable in (
        "USEROPS_SEGMENTER_DATABASE_URL",
        "USEROPS_REWARDS_DATABASE_URL",
        "USEROPS_NOTIFIER_DATABASE_URL",
    ):
        env.pop(variable, None)
    specs = [
        ServiceSpec(
            name="sinks",
            command=(sys.executable, "-m", "scripts.stack.sinks"),
            env=env,
            ready_url=f"http://127.0.0.1:{sink_http}/health",
            cwd=REPO_ROOT,
        ),
        *(
            ServiceSpec(
                name=name,
                command=(sys.executable, "-m", f"services.{name}"),
                env=env,
                ready_url=f"http://127.0.0.1:{port}/ready",
                cwd=REPO_ROOT,
            )
            for name, port in ports.items()
        ),
    ]
    said: list[str] = []
    live = LiveStack(
        urls={name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
        sinks_url=f"http://127.0.0.1:{sink_http}",
        topics=names,
        databases=databases,
        supervisor=Supervisor(
            specs, policy=RestartPolicy(initial=0.5, maximum=2.0), say=said.append, sink=io.BytesIO()
        ),
        said=said,
    )
    began = time.monotonic()
    live.supervisor.start()
    failure = await asyncio.to_thread(
        live.supervisor.wait_ready,
        120.0,
        lambda name: said.append(f"{name} ready after {time.monotonic() - began:.1f} s"),
    )
    if failure is not None:
        await stop_live_stack(stack, live)
        raise AssertionError(failure.describe())
    return live


async def stop_live_stack(stack: Stack, live: LiveStack) -> None:
    await asyncio.to_thread(live.supervisor.stop, 30.0)
    await drop_databases(stack, live.databases)


def exits(live: LiveStack) -> str:
    """The services that exited since the start, with their last log lines ('' if none did)."""
    out = []
    for name, proc in live.supervisor.procs.items():
        code = proc.poll()
        if code is not None:
            out.append(f"{name} exited with {code}:\n" + "\n".join(proc.last_lines()))
    return "\n".join(out)
