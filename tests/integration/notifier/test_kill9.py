"""kill -9 of the notifier, at least 5 times, while events stream into the consumed topic: every
expected message reaches the webhook receiver and the SMTP server, under its one send key, and
no other message does; caps hold across the crashes; each inbox message exists once.

A crash after the receiver got a request but before the outcome was recorded makes the job run
again with the SAME key (at-least-once per key, by design: receivers dedupe on `webhook-id` /
`Message-ID`); what must never happen is a second message under a different key, or a missing one.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from scripts.stack.sinks import Sinks
from services.notifier.domain.sends import send_key
from shared import topics as t
from shared.ids import input_id
from tests.conftest import Stack, eventually, plain_url
from tests.integration.notifier.conftest import NotifierFactory, write_config
from tests.integration.notifier.harness import identify, produce, track

USERS = 60
PROMOS = 5  # per user; the campaign's cap lets 3 through
KILLS = 5


def workload(run: str) -> tuple[list[list[dict[str, Any]]], set[str], set[str]]:
    """Chunks of events to stream, and the webhook ids and Message-IDs expected at the sinks."""
    base = datetime.now(UTC) - timedelta(minutes=5)
    hooks: set[str] = set()
    mails: set[str] = set()
    per_user: list[list[dict[str, Any]]] = []
    for i in range(USERS):
        user = f"k{i}-{run}"
        events = [
            identify(user, mid="id", traits={"email": f"{user}@example.com"}),
            track(user, "Signed Up", mid="signup", ts=base),
        ]
        signup = input_id(t.EVENTS, user, "signup")
        hooks.add(send_key(signup, "welcome_hook", "webhook"))
        mails.add(f"<{send_key(signup, 'welcome_mail', 'email')}@notify.test>")
        for j in range(PROMOS):
            events.append(track(user, "Promo", mid=f"promo-{j}", ts=base + timedelta(seconds=2 * (j + 1))))
            if j < 3:
                hooks.add(send_key(input_id(t.EVENTS, user, f"promo-{j}"), "promo", "webhook"))
        per_user.append(events)
    # Interleave users so every chunk touches many of them, in each user's own order.
    flat = [e for step in zip(*per_user, strict=True) for e in step]
    size = len(flat) // 12 + 1
    return [flat[k : k + size] for k in range(0, len(flat), size)], hooks, mails


async def test_each_send_once_under_kill9_while_events_stream(
    stack: Stack,
    topics: dict[str, str],
    sinks: Sinks,
    notifier_factory: NotifierFactory,
    tmp_path: Path,
    database: str,
) -> None:
    run = uuid.uuid4().hex[:6]
    chunks, expected_hooks, expected_mails = workload(run)
    config = write_config(tmp_path / "n.yaml", sinks.url)
    extra = {
        "USEROPS_NOTIFIER_INSTANCE_ID": f"kill9-{run}",  # static membership: a restart takes its partitions back
        "USEROPS_NOTIFIER_SESSION_TIMEOUT_MS": "6000",
        "USEROPS_NOTIFIER_MAX_BATCH": "20",
    }
    notifier = notifier_factory(config, **extra)
    notifier.start()
    await notifier.wait_ready()

    async def stream() -> None:
        for chunk in chunks:
            await produce(stack.bootstrap, topics[t.EVENTS], chunk)
            await asyncio.sleep(0.3)  # pacing, so the kills land while events keep arriving

    streaming = asyncio.create_task(stream())
    rng = random.Random(run)
    kills = 0
    while kills < KILLS:
        await asyncio.sleep(rng.uniform(0.3, 1.2))
        notifier.kill9()
        kills += 1
        notifier = notifier_factory(config, **extra)
        notifier.start()
        await notifier.wait_ready()
    await streaming
    assert kills >= KILLS

    push = sinks.webhooks
    # Jobs whose worker died mid-effect come back when their lease ends (timeout + margin).
    await eventually(
        lambda: (
            {r["webhook_id"] for r in push.received} >= expected_hooks
            and set(sinks.mail.counts) >= expected_mails
        ),
        timeout=60,
        interval=0.5,
    )
    hook_ids = {r["webhook_id"] for r in push.received}
    assert hook_ids == expected_hooks  # nothing under another key: no duplicate message, caps held
    assert set(sinks.mail.counts) == expected_mails
    assert all(r["verified"] for r in push.received)
    conn = await asyncpg.connect(plain_url(database))
    try:
        inbox = await conn.fetch("SELECT user_id, count(*) AS n FROM inbox GROUP BY user_id")
        capped = await conn.fetchval(
            "SELECT count(*) FROM outcomes WHERE campaign = 'promo' AND kind = 'capped'"
        )
    finally:
        await conn.close()
    assert len(inbox) == USERS and {r["n"] for r in inbox} == {1}
    assert capped == USERS * (PROMOS - 3)
    resent = sum(n - 1 for n in push.counts.values()) + sum(n - 1 for n in sinks.mail.counts.values())
    print(f"kills={kills} webhooks={len(hook_ids)} mails={len(expected_mails)} resent_same_key={resent}")
