"""Every metric the alerts and dashboards query is exported by a running service.

The four real services run on the test's Kafka and PostgreSQL. prometheus_client exports a
labelled series only once it was used, so the test makes each thing happen that a query counts:
events accepted and refused, a record no consumer can decode (dead letters), points awarded,
capped, reversed, redeemed and expired, a hold that expires (timers fire), a rewards timer whose
handler fails, webhooks delivered and emails that fail for good after a retry (jobs), stage
transitions and segment members, and a cancelled statement that makes a consumer retry. Then
`/metrics` of every service is scraped and each `userops_*` name in
deploy/prometheus/alerts.yml and deploy/grafana/dashboards/*.json must be among the series.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
import yaml

from shared.kafka import create_producer
from tests.conftest import Stack, eventually
from tests.integration.ops.live_stack import ADMIN_TOKEN, WRITE_KEY, LiveStack, exits

REPO: Final = Path(__file__).resolve().parents[3]
DEPLOY: Final = REPO / "deploy"
SERIES: Final = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{|\s)", re.M)


def referenced_metrics() -> dict[str, set[str]]:
    """Each `userops_*` name in the alert rules and dashboard queries -> where it is used."""
    used: dict[str, set[str]] = {}
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            for name in re.findall(r"\buserops_[a-z0-9_]+", rule["expr"]):
                used.setdefault(name, set()).add(f"alert {rule['alert']}")
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        panels = [p for top in board["panels"] for p in (top, *top.get("panels", []))]
        exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
        exprs += [v.get("definition", "") for v in board.get("templating", {}).get("list", [])]
        for expr in exprs:
            for name in re.findall(r"\buserops_[a-z0-9_]+", expr):
                used.setdefault(name, set()).add(f"dashboard {path.name}")
    return used


async def scrape(live: LiveStack) -> dict[str, set[str]]:
    """Series names each service exports now."""
    out = {}
    async with httpx.AsyncClient(timeout=10) as c:
        for name, url in live.urls.items():
            try:
                text = (await c.get(f"{url}/metrics")).text
            except httpx.TransportError as exc:
                raise AssertionError(f"{name} does not answer ({exc!r}); {exits(live)}") from exc
            out[name] = set(SERIES.findall(text))
    return out


def exported(scraped: dict[str, set[str]], metric: str) -> bool:
    everything = set().union(*scraped.values())
    return metric in everything


async def drive(stack: Stack, live: LiveStack) -> None:
    """Make happen everything the alerts and dashboards count."""
    user = f"live-{uuid.uuid4().hex[:6]}"
    events: list[dict[str, Any]] = [
        {"type": "identify", "userId": user, "traits": {"email": f"{user}@example.com"}},
        {"type": "track", "userId": user, "event": "Signed Up"},
        {"type": "track", "userId": user, "event": "Lesson Completed"},
        {"type": "track", "userId": user, "event": "Lesson Completed"},  # capped
        {
            "type": "track",
            "userId": user,
            "event": "Order Completed",
            "properties": {"revenue": 50, "order_id": "o1"},
        },
        {"type": "track", "userId": user, "event": "Order Refunded", "properties": {"order_id": "o1"}},
    ]
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(timeout=10) as c:
        ok = await c.post(f"{live.urls['ingest']}/v1/batch", auth=(WRITE_KEY, ""), json={"batch": events})
        assert ok.status_code == 200, ok.text
        bad = await c.post(f"{live.urls['ingest']}/v1/track", auth=(WRITE_KEY, ""), json={"event": "x"})
        assert bad.status_code == 400, bad.text

        async def account() -> bool:
            r = await c.get(f"{live.urls['rewards']}/v1/users/{user}", headers=admin)
            return r.status_code == 200 and r.json()["balance"]["available"] >= 10  # two holds of 5

        await eventually(account, timeout=60)
        rewards = live.urls["rewards"]
        for key, settle in (("r1", "confirm"), ("r2", None)):  # one redeemed, one left to expire
            r = await c.post(
                f"{rewards}/v1/users/{user}/redemptions",
                headers={**admin, "Idempotency-Key": key},
                json={"points": 5},
            )
            assert r.status_code == 201, r.text
            if settle:
                r = await c.post(f"{rewards}/v1/users/{user}/redemptions/{key}/{settle}", headers=admin)
                assert r.status_code == 200, r.text
    # A record no consumer can decode: every consumer of the events topic dead-letters it.
    producer = create_producer(stack.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(live.topics["userops.events.v1"], b"\xff not json", key=b"garbage")
    finally:
        await producer.stop()
    # A rewards timer whose payload is corrupt: its handler fails, the failure is counted.
    rewards_db = await asyncpg.connect(stack.postgres.url(live.databases["rewards"]))
    try:
        await rewards_db.execute(
            "INSERT INTO timers (kind, key, due_at, payload) VALUES ('rewards.hold_expiry', 'corrupt', now(), '{}')"
        )
    finally:
        await rewards_db.close()


async def cancelled_statement(stack: Stack, live: LiveStack) -> None:
    """The segmenter's batch waits on a lock and its statement is cancelled (SQLSTATE 57014, as a
    statement_timeout or an operator's pg_cancel_backend does): a transient failure it retries."""
    db = live.databases["segmenter"]
    holder = await asyncpg.connect(stack.postgres.url(db))
    admin = await asyncpg.connect(stack.postgres.url())
    try:
        locked = holder.transaction()
        await locked.start()
        await holder.execute("LOCK TABLE processed_messages IN ACCESS EXCLUSIVE MODE")
        async with httpx.AsyncClient(timeout=10) as c:
            r = await c.post(
                f"{live.urls['ingest']}/v1/track",
                auth=(WRITE_KEY, ""),
                json={"userId": "blocked", "event": "Lesson Completed"},
            )
            assert r.status_code == 200, r.text

        async def cancel_waiters() -> int:
            cancelled: int = await admin.fetchval(
                "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND wait_event_type = 'Lock' AND pid <> $2",
                db,
                holder.get_server_pid(),
            )
            return cancelled

        await eventually(cancel_waiters, timeout=60)
        await locked.rollback()

        async def retried() -> bool:
            return "userops_consumer_retries_total" in (await scrape(live))["segmenter"]

        await eventually(retried, timeout=60)
    finally:
        await holder.close()
        await admin.close()


async def test_every_metric_of_the_alerts_and_dashboards_is_exported(stack: Stack, live: LiveStack) -> None:
    used = referenced_metrics()
    assert len(used) > 40, "the alert and dashboard files were not read"
    await drive(stack, live)
    await cancelled_statement(stack, live)

    async def missing() -> list[str]:
        scraped = await scrape(live)
        return sorted(m for m in used if not exported(scraped, m))

    last: list[str] = []

    async def none_missing() -> bool:
        nonlocal last
        last = await missing()
        return not last

    try:
        await eventually(none_missing, timeout=60, interval=0.5)
    except AssertionError:
        pytest.fail("not exported by any service: " + ", ".join(f"{m} ({sorted(used[m])})" for m in last))
    async with httpx.AsyncClient(timeout=10) as c:
        for url in live.urls.values():
            text = (await c.get(f"{url}/metrics")).text
            assert "live-" not in text, "a user id in a metric label"


def test_the_check_would_notice_a_metric_no_service_exports() -> None:
    """The comparison above is by exact series name: a renamed or misspelt metric is not 'exported'."""
    scraped = {"ingest": {"userops_http_requests_total", "userops_ingest_batch_size_bucket"}}
    assert exported(scraped, "userops_http_requests_total")
    assert exported(scraped, "userops_ingest_batch_size_bucket")
    assert not exported(scraped, "userops_http_request_total")
    assert not exported(scraped, "userops_ingest_batch_size_count")
