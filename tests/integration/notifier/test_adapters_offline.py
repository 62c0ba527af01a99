"""The channel adapters' pure parts (no broker, no database): signatures, email headers, tokens,
settings. Kept beside the integration tests of the same adapters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook

from services.notifier.adapters.email import build_message, message_id
from services.notifier.adapters.inbox_tokens import InboxTokens, InvalidToken
from services.notifier.adapters.webhook import WebhookSender
from services.notifier.domain.unsubscribe import UnsubscribeSigner, one_click_headers
from services.notifier.settings import NotifierSettings
from shared.runtime.errors import PermanentError
from shared.runtime.jobs import ClaimedJob
from tests.integration.notifier.harness import INBOX_SECRET, UNSUBSCRIBE_SECRET, WEBHOOK_SECRET

NOW = datetime(2026, 3, 8, 12, tzinfo=UTC)


async def test_webhook_headers_verify_with_the_reference_library() -> None:
    sender = WebhookSender(WEBHOOK_SECRET, 1.0)
    body = orjson.dumps({"a": 1})
    headers = sender.headers("send-key-1", body, datetime.now(UTC))
    assert Webhook(WEBHOOK_SECRET).verify(body, headers) == {"a": 1}
    assert headers["webhook-id"] == "send-key-1"
    tampered = {**headers, "webhook-id": "other"}
    with pytest.raises(Exception, match="signature"):
        Webhook(WEBHOOK_SECRET).verify(body, tampered)
    await sender.close()


def test_email_has_both_parts_a_stable_message_id_and_one_click_headers() -> None:
    url = UnsubscribeSigner(UNSUBSCRIBE_SECRET.encode(), "https://app.test/u").url("u1", "topic:x", NOW)
    job = ClaimedJob(
        "key-1",
        "email",
        {
            "to": "u1@example.com",
            "fields": {"subject": "Hi", "text": "plain", "html": "<p>html</p>"},
            "headers": one_click_headers(url),
        },
        1,
        5,
    )
    msg = build_message(job, "userops <no-reply@notify.test>")
    assert msg["Message-ID"] == message_id("key-1", "no-reply@notify.test") == "<key-1@notify.test>"
    assert msg["List-Unsubscribe"] == f"<{url}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert {part.get_content_type() for part in msg.iter_parts()} == {"text/plain", "text/html"}
    broken = ClaimedJob("key-2", "email", {**job.payload, "to": "a@example.com\nBcc: x@example.com"}, 1, 5)
    with pytest.raises(PermanentError):
        build_message(broken, "no-reply@notify.test")


def test_inbox_tokens_name_one_user_and_expire() -> None:
    tokens = InboxTokens(INBOX_SECRET.encode(), ttl=timedelta(hours=1))
    token = tokens.mint("user-1", NOW)
    assert tokens.verify(token, NOW + timedelta(minutes=59)) == "user-1"
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(token, NOW + timedelta(hours=1))
    with pytest.raises(InvalidToken):
        InboxTokens(b"x" * 32).verify(token, NOW)
    # An unsubscribe link signed with the same secret is still not an inbox token.
    link = UnsubscribeSigner(INBOX_SECRET.encode(), "https://x.test/").token("user-1", "all", NOW)
    with pytest.raises(InvalidToken, match="not an inbox token"):
        tokens.verify(link, NOW)


def test_settings_require_well_formed_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    good = {
        "USEROPS_ADMIN_TOKEN": "a",
        "USEROPS_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "USEROPS_UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET,
        "USEROPS_INBOX_SECRET": INBOX_SECRET,
    }
    for name, value in good.items():
        monkeypatch.setenv(name, value)
    assert NotifierSettings().notifier_port == 8003
    monkeypatch.setenv("USEROPS_UNSUBSCRIBE_SECRET", "short")
    with pytest.raises(ValidationError, match="unsubscribe_secret"):
        NotifierSettings()
    monkeypatch.setenv("USEROPS_UNSUBSCRIBE_SECRET", UNSUBSCRIBE_SECRET)
    monkeypatch.setenv("USEROPS_WEBHOOK_SECRET", "no-prefix")
    with pytest.raises(ValidationError, match="whsec_"):
        NotifierSettings()
