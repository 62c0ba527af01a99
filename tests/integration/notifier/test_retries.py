"""Webhook failure policy against a real local receiver: 4xx is final (listed, replayable),
5xx is retried on the documented schedule, and a receiver that timed out after processing gets
the same `webhook-id` again."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from scripts.stack.kafka import REPO_ROOT
from scripts.stack.sinks import Sinks
from services.notifier.domain.sends import send_key
from shared import topics as t
from shared.ids import input_id
from tests.conftest import Stack, eventually, plain_url
from tests.integration.notifier.conftest import NotifierFactory, write_config
from tests.integration.notifier.harness import NotifierProcess, produce, track


def key_of(user: str, mid: str) -> str:
    return send_key(input_id(t.EVENTS, user, mid), "fragile", "webhook")


def arrivals(sinks: Sinks, key: str) -> list[datetime]:
    return [
        datetime.fromisoformat(r["received_at"]) for r in sinks.webhooks.received if r["webhook_id"] == key
    ]


async def test_4xx_final_5xx_retried_on_schedule_and_timeouts_resent_with_the_same_id(
    stack: Stack,
    topics: dict[str, str],
    sinks: Sinks,
    notifier_factory: NotifierFactory,
    tmp_path: Path,
    database: str,
) -> None:
    run = uuid.uuid4().hex[:6]
    users = {name: f"{name}-{run}" for name in ("gone", "flaky", "down", "slow")}
    keys = {name: key_of(user, "f-1") for name, user in users.items()}
    behaviour: dict[str, Callable[[int], tuple[int, float]]] = {
        keys["gone"]: lambda n: (410, 0.0),
        keys["flaky"]: lambda n: (503 if n <= 2 else 200, 0.0),
        keys["down"]: lambda n: (500, 0.0),
        keys["slow"]: lambda n: (200, 3.0 if n == 1 else 0.0),  # processed, then too slow to answer
    }
    sinks.webhooks.respond = lambda msg_id, n: behaviour[msg_id](n)
    notifier = notifier_factory(write_config(tmp_path / "n.yaml", sinks.url))
    notifier.start()
    await notifier.wait_ready()
    await produce(stack.bootstrap, topics[t.EVENTS], [track(u, "Fragile", mid="f-1") for u in users.values()])

    counts = sinks.webhooks.counts
    await eventually(
        lambda: (
            counts.get(keys["flaky"]) == 3 and counts.get(keys["down"]) == 4 and counts.get(keys["slow"]) == 2
        ),
        timeout=40,
    )
    # 5xx: retried with full-jitter backoff, 0.5 s then 1 s bases (each at least half its base).
    first, second, third = arrivals(sinks, keys["flaky"])
    assert 0.25 <= (second - first).total_seconds() < 3
    assert 0.5 <= (third - second).total_seconds() < 4
    # The slow receiver got the same webhook-id twice: it can dedupe.
    assert {r["webhook_id"] for r in sinks.webhooks.received if r["body"]["userId"] == users["slow"]} == {
        keys["slow"]
    }
    # 4xx: one attempt only, failed at once, listed and replayable.
    failed = await eventually(
        lambda: _failed(notifier, {keys["gone"], keys["down"]}),
        timeout=20,
    )
    assert counts[keys["gone"]] == 1
    by_key = {f["send_key"]: f for f in failed}
    assert by_key[keys["gone"]]["attempts"] == 1 and "410" in by_key[keys["gone"]]["reason"]
    assert by_key[keys["down"]]["attempts"] == 4 and by_key[keys["down"]]["replayable"]
    # The same failed jobs through the operators' CLI.
    listed = subprocess.run(
        [sys.executable, "-m", "scripts.cli", "jobs", "failed", "--url", database, "--kind", "webhook"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert keys["gone"][:8] in listed.stdout
    # Replay after the receiver is fixed: delivered once more with the same id, then `sent`.
    behaviour[keys["gone"]] = lambda n: (200, 0.0)
    async with notifier.client() as c:
        r = await c.post(f"/v1/deliveries/{keys['gone']}/replay")
        assert r.status_code == 200, r.text
        again = await c.post(f"/v1/deliveries/{keys['flaky']}/replay")
        assert again.status_code == 409 and again.json()["code"] == "not_replayable"
        missing = await c.post("/v1/deliveries/nope/replay")
        assert missing.status_code == 404
    await eventually(lambda: counts[keys["gone"]] == 2, timeout=20)
    history = await eventually(lambda: _state(notifier, users["gone"], "sent"), timeout=20)
    assert history["attempts"] == 1
    assert plain_url(database)


async def _failed(notifier: NotifierProcess, keys: set[str]) -> list[dict[str, object]] | None:
    rows: list[dict[str, object]] = await notifier.get("/v1/deliveries/failed")
    return rows if keys <= {str(r["send_key"]) for r in rows} else None


async def _state(notifier: NotifierProcess, user: str, state: str) -> dict[str, object] | None:
    rows: list[dict[str, object]] = await notifier.get(f"/v1/users/{user}/messages")
    return rows[0] if rows and rows[0]["state"] == state else None
