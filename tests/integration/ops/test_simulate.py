"""`userops simulate` through the real stack: the Segment SDK → ingest → Kafka → every service.

A small seeded population's weeks of traffic go through a real ingest into real Kafka and
PostgreSQL, read by the real segmenter, rewards and notifier (with the local sinks as webhook
and SMTP receivers, on free ports). Once the consumer groups have committed the end of their
topics and no service has a backlog, the demo's summary, read from the services' APIs, shows
users in several stages, points awarded per rule, a redemption, and messages sent.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from pydantic import SecretStr
from rich.console import Console

from scripts.commands.demo import redeem
from scripts.commands.endpoints import Endpoints
from scripts.commands.simulate import build, default_start, deliver
from scripts.sim.settle import wait_caught_up
from scripts.sim.summary import collect, print_summary
from scripts.stack.kafka import REPO_ROOT
from scripts.stack.procs import free_port
from scripts.stack.services import DEV_NOTIFIER_ENV, service_env, service_specs
from scripts.stack.settings import StackSettings
from scripts.stack.supervisor import ServiceSpec, Supervisor
from shared import topics as t
from tests.conftest import Stack

WRITE_KEY = "sim-write-key"
TOKEN = "sim-admin-token"
NOTIFIER = REPO_ROOT / "config" / "notifier.yaml"


@pytest.fixture
async def services(
    stack: Stack, topics: dict[str, str], new_database: Callable[[], Awaitable[str]], tmp_path: Path
) -> AsyncIterator[tuple[StackSettings, dict[str, str], dict[str, tuple[str, ...]]]]:
    make_db = new_database
    settings = StackSettings(
        home=tmp_path,
        kafka_port=stack.kafka.port,
        pg_port=stack.postgres.port,
        ingest_port=free_port(),
        segmenter_port=free_port(),
        rewards_port=free_port(),
        notifier_port=free_port(),
    )
    http_port, smtp_port = free_port(), free_port()
    suffix = uuid.uuid4().hex[:8]
    groups = {
        f"segmenter-{suffix}": (topics[t.EVENTS],),
        f"rewards-{suffix}": (topics[t.EVENTS], topics[t.LIFECYCLE]),
        f"notifier-{suffix}": (topics[t.EVENTS], topics[t.LIFECYCLE], topics[t.REWARDS]),
    }
    env = service_env(settings, os.environ, ("ingest", "segmenter", "rewards", "notifier"))
    env.update(
        {
            **DEV_NOTIFIER_ENV,
            "USEROPS_DEV_WRITE_KEY": WRITE_KEY,
            "USEROPS_ADMIN_TOKEN": TOKEN,
            "USEROPS_INGEST_WORKERS": "1",
            "USEROPS_INGEST_EVENTS_TOPIC": topics[t.EVENTS],
            "USEROPS_EVENTS_TOPIC": topics[t.EVENTS],
            "USEROPS_LIFECYCLE_TOPIC": topics[t.LIFECYCLE],
            "USEROPS_REWARDS_TOPIC": topics[t.REWARDS],
            "USEROPS_DELIVERIES_TOPIC": topics[t.DELIVERIES],
            "USEROPS_DEADLETTER_TOPIC": topics[t.DEADLETTER],
            "USEROPS_SEGMENTER_DATABASE_URL": await make_db(),
            "USEROPS_REWARDS_DATABASE_URL": await make_db(),
            "USEROPS_NOTIFIER_DATABASE_URL": await make_db(),
            "USEROPS_SEGMENTER_GROUP": f"segmenter-{suffix}",
            "USEROPS_REWARDS_GROUP": f"rewards-{suffix}",
            "USEROPS_NOTIFIER_GROUP": f"notifier-{suffix}",
            "USEROPS_SINK_HTTP_PORT": str(http_port),
            "USEROPS_SINK_SMTP_PORT": str(smtp_port),
            "USEROPS_SMTP_PORT": str(smtp_port),
            "USEROPS_WEBHOOK_ENDPOINTS_OVERRIDE": f"http://127.0.0.1:{http_port}/hooks",
            "USEROPS_LOG_LEVEL": "WARNING",
        }
    )
    for name in ("SEGMENTER", "REWARDS", "NOTIFIER"):
        env[f"USEROPS_{name}_INSTANCE_ID"] = f"sim-{name.lower()}-{suffix}"
    specs: list[ServiceSpec] = []
    for spec in service_specs(settings, env):
        if spec.name == "sinks":
            spec = ServiceSpec(
                "sinks",
                (sys.executable, "-m", "scripts.stack.sinks"),
                {**env, "USEROPS_SINK_MAIL_DIR": str(tmp_path / "mail"), "USEROPS_SINK_QUIET": "1"},
                f"http://127.0.0.1:{http_port}/health",
                REPO_ROOT,
            )
        specs.append(
            replace(spec, env={**spec.env, **{k: v for k, v in env.items() if k.endswith("INSTANCE_ID")}})
        )
    sup = Supervisor(specs, say=lambda _: None, sink=io.BytesIO())
    sup.start()
    try:
        failure = await asyncio.to_thread(sup.wait_ready, 180.0)
        assert failure is None, failure.describe()
        yield settings, topics, groups
    finally:
        await asyncio.to_thread(sup.stop, 30.0)


async def test_a_simulated_population_moves_through_every_service(
    stack: Stack, services: tuple[StackSettings, dict[str, str], dict[str, tuple[str, ...]]]
) -> None:
    settings, _, groups = services
    sim = build(3, 80, 16, default_start(16, datetime.now(UTC)), NOTIFIER)
    console = Console(file=io.StringIO(), width=140)
    ep_ingest = f"http://127.0.0.1:{settings.ingest_port}"
    await asyncio.to_thread(deliver, sim, ep_ingest, WRITE_KEY, None, console)
    local = "http://127.0.0.1:{}".format
    ep = Endpoints(
        local(settings.ingest_port),
        local(settings.segmenter_port),
        local(settings.rewards_port),
        local(settings.notifier_port),
        SecretStr(WRITE_KEY),
        SecretStr(TOKEN),
    )
    metrics = [ep.url(s, "metrics") for s in ("segmenter", "rewards", "notifier")]
    state = await wait_caught_up(stack.bootstrap, groups, metrics, timeout=90)
    assert state.done, state.describe()
    redeemed = await asyncio.to_thread(redeem, ep, sim.redemptions)
    again = await asyncio.to_thread(redeem, ep, sim.redemptions)
    assert redeemed > 0 and again == 0  # each wish is one redemption, by its Idempotency-Key

    summary = await asyncio.to_thread(collect, ep, sim)
    in_stages = {s for s, n in summary.run_stages.items() if n}
    assert len(in_stages) >= 4, summary.run_stages
    assert {"dormant", "at_risk"} <= in_stages
    assert sum(summary.run_stages.values()) == len(sim.users) == sum(summary.stages.values())
    known = sum(n for _, n in summary.activated.values())
    assert known == len(sim.users)  # every simulated user reached the segmenter (anonymous ones merged)
    assert sum(yes for yes, _ in summary.activated.values()) > 0
    assert summary.retention and summary.active["mau"] > 0

    eco = summary.economy
    assert {"lesson_completed", "purchase", "referral:referee"} <= eco["by_rule"].keys()
    assert eco["awarded"] == sum(r["awarded"] for r in eco["by_rule"].values()) > 0
    assert eco["redeemed"] == redeemed
    assert [b["ruleId"] for b in eco["budgets"]] == ["winback"]

    sent = {name: rep["totals"].get("sent", 0) for name, rep in summary.campaigns.items()}
    assert sum(sent.values()) > 0, summary.campaigns
    assert summary.campaigns["welcome"]["totals"].get("cancelled", 0) > 0  # weeks-old sign-ups: stale
    print_summary(summary, console)
    assert "Lifecycle stages" in console.file.getvalue()  # type: ignore[attr-defined]

    # A wrong write key: ingest refuses (401, final for the SDK) and the send exits 1.
    with pytest.raises(typer.Exit) as refused:
        await asyncio.to_thread(
            deliver, build(5, 2, 1, default_start(1), NOTIFIER), ep_ingest, "wrong-key", None, console
        )
    assert refused.value.exit_code == 1
