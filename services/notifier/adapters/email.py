"""The email channel: one SMTP submission per attempt, with aiosmtplib.

A message has a plain-text part and, when the template has one, an HTML alternative; its
`Message-ID` is derived from the send key (`<send-key@sender-domain>`), so every attempt of one
send is the same message to the receiving side; `List-Unsubscribe` carries the signed https
link (and an optional mailto) and `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
STARTTLS is used when configured.

Classification: the server refusing the recipient or the message permanently (5xx) →
`PermanentError`; a temporary refusal (4xx), a timeout or a connection error → retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr

import aiosmtplib

from services.notifier.adapters.webhook import DeliveryFailed
from shared.runtime.errors import PermanentError
from shared.runtime.jobs import ClaimedJob


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = 30.0


def message_id(send_key: str, sender: str) -> str:
    """The `Message-ID` of a send: the send key at the sender's domain."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "userops.local"
    return f"<{send_key}@{domain}>"


def build_message(job: ClaimedJob, sender: str) -> EmailMessage:
    """The message of an email job (`payload`: `to`, `fields` subject/text/html, `headers`)."""
    payload = job.payload
    fields = payload["fields"]
    msg = EmailMessage()
    try:
        msg["From"] = sender
        msg["To"] = payload["to"]
        msg["Subject"] = fields["subject"]
        msg["Message-ID"] = message_id(job.id, sender)
        for name, value in payload.get("headers", {}).items():
            msg[name] = value
    except (ValueError, TypeError) as exc:  # e.g. a header with a line break
        raise PermanentError("invalid_email", str(exc)) from exc
    msg.set_content(fields.get("text", ""))
    if fields.get("html"):
        msg.add_alternative(fields["html"], subtype="html")
    return msg


class EmailSender:
    def __init__(self, smtp: SmtpSettings) -> None:
        self._smtp = smtp

    async def perform(self, job: ClaimedJob) -> None:
        msg = build_message(job, self._smtp.sender)
        s = self._smtp
        try:
            await aiosmtplib.send(
                msg,
                hostname=s.host,
                port=s.port,
                username=s.username,
                password=s.password,
                start_tls=s.starttls,
                use_tls=False,
                timeout=s.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            if all(500 <= c < 600 for c in codes):
                raise PermanentError("recipient_refused", str(exc)) from exc
            raise DeliveryFailed(f"recipient refused for now: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise PermanentError("smtp_refused", f"{exc.code} {exc.message}") from exc
            raise DeliveryFailed(f"{exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
