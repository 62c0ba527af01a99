"""LOCAL DEVELOPMENT SINKS — never for production: where the notifier's messages land on this machine.

- a webhook receiver (HTTP on 127.0.0.1): `POST /hooks/<anything>` is logged as one JSON line
  (with its `webhook-id`), its Standard Webhooks signature is verified with the secret in
  `USEROPS_WEBHOOK_SECRET` (the notifier's), and the last N requests are kept in memory and served
  at `GET /received`;
- an SMTP server (aiosmtpd on 127.0.0.1) that accepts every message, keeps the last N (served at
  `GET /mail` on the same HTTP server) and writes each to `.local/mail/<n>.eml`.

Run: `python -m scripts.stack.sinks` (ports: `USEROPS_SINK_HTTP_PORT`, default 8025;
`USEROPS_SINK_SMTP_PORT`, default 1025; `USEROPS_SINK_KEEP` requests/messages kept, default
1000; `USEROPS_SINK_QUIET=1` logs only the start; `USEROPS_SINK_MAIL_DIR`, default `.local/mail`;
`USEROPS_SINK_HOST`, default 127.0.0.1 — only a throwaway container network should widen it).

Point the notifier at them with `USEROPS_SMTP_HOST=127.0.0.1 USEROPS_SMTP_PORT=1025` and
`USEROPS_WEBHOOK_ENDPOINTS_OVERRIDE=http://127.0.0.1:8025/hooks` (every endpoint of its config then
posts to `/hooks/<endpoint name>`). Tests use the same classes in-process, with
`WebhookSink.respond` deciding each answer (status, and a delay after the request was recorded).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Respond = Callable[[str, int], tuple[int, float]]
"""(webhook-id, how many times this id arrived) -> (HTTP status, seconds to wait before answering)."""


def _log(kind: str, **fields: Any) -> None:
    line = {"at": datetime.now(UTC).isoformat(), "sink": kind, **fields}
    sys.stdout.write(orjson.dumps(line).decode() + "\n")
    sys.stdout.flush()


@dataclass
class WebhookSink:
    """Records every webhook request (verified against `secret` when given)."""

    secret: str | None = None
    keep: int = 1000
    respond: Respond = field(default=lambda _id, _n: (200, 0.0))
    quiet: bool = False
    received: deque[dict[str, Any]] = field(default_factory=deque)
    counts: dict[str, int] = field(default_factory=dict)
    """Receipts per webhook-id (never trimmed), for tests counting deliveries."""

    def __post_init__(self) -> None:
        self.received = deque(maxlen=self.keep)
        self._verifier = Webhook(self.secret) if self.secret else None

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        msg_id = headers.get("webhook-id", "")
        verified: bool | None = None
        if self._verifier is not None:
            try:
                self._verifier.verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
        n = self.counts[msg_id] = self.counts.get(msg_id, 0) + 1
        try:
            parsed: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = body.decode("utf-8", "replace")
        item = {
            "path": request.url.path,
            "webhook_id": msg_id,
            "webhook_timestamp": headers.get("webhook-timestamp"),
            "verified": verified,
            "received_at": datetime.now(UTC).isoformat(),
            "body": parsed,
        }
        self.received.append(item)
        status, delay = self.respond(msg_id, n)
        if not self.quiet:
            _log("webhook", webhook_id=msg_id, verified=verified, path=request.url.path, status=status)
        if delay:
            await asyncio.sleep(delay)
        return JSONResponse({"received": True}, status_code=status)


class MailSink:
    """An aiosmtpd handler that accepts and keeps every message."""

    def __init__(self, keep: int = 1000, folder: Path | None = None, quiet: bool = False) -> None:
        self.messages: deque[dict[str, Any]] = deque(maxlen=keep)
        self.counts: dict[str, int] = {}
        self._folder = folder
        self._n = 0
        self._quiet = quiet

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        msg = message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        message_id = str(msg.get("Message-ID", ""))
        self.counts[message_id] = self.counts.get(message_id, 0) + 1
        text = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        self._n += 1
        item = {
            "message_id": message_id,
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "subject": str(msg.get("Subject", "")),
            "list_unsubscribe": str(msg.get("List-Unsubscribe", "")),
            "list_unsubscribe_post": str(msg.get("List-Unsubscribe-Post", "")),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
            "received_at": datetime.now(UTC).isoformat(),
        }
        self.messages.append(item)
        if self._folder is not None:
            self._folder.mkdir(parents=True, exist_ok=True)
            (self._folder / f"{self._n:06d}.eml").write_bytes(raw)
        if not self._quiet:
            _log("smtp", message_id=message_id, to=item["to"], subject=item["subject"])
        return "250 OK"


def http_app(webhooks: WebhookSink, mail: MailSink) -> Starlette:
    async def received(request: Request) -> Response:
        return JSONResponse(list(webhooks.received))

    async def mails(request: Request) -> Response:
        return JSONResponse(list(mail.messages))

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "sink": "local development only"})

    return Starlette(
        routes=[
            Route("/hooks/{rest:path}", webhooks.handle, methods=["POST"]),
            Route("/received", received, methods=["GET"]),
            Route("/mail", mails, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


@dataclass
class Sinks:
    """Both sinks on the running event loop; `start()` / `stop()`."""

    http_port: int
    smtp_port: int
    webhooks: WebhookSink
    mail: MailSink
    host: str = "127.0.0.1"  # loopback only: these sinks accept anything from anyone
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None
    _smtp: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    async def start(self) -> None:
        config = uvicorn.Config(
            http_app(self.webhooks, self.mail),
            host=self.host,
            port=self.http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        loop = asyncio.get_running_loop()
        self._smtp = await loop.create_server(
            lambda: SMTP(self.mail, hostname="sink.local"), host=self.host, port=self.smtp_port
        )
        while not self._server.started:
            if self._task.done():
                await self._task  # raises the start failure
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            await self._smtp.wait_closed()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task


async def _main() -> None:
    http_port = int(os.environ.get("USEROPS_SINK_HTTP_PORT", "8025"))
    smtp_port = int(os.environ.get("USEROPS_SINK_SMTP_PORT", "1025"))
    folder = Path(os.environ.get("USEROPS_SINK_MAIL_DIR", ".local/mail"))
    keep = int(os.environ.get("USEROPS_SINK_KEEP", "1000"))
    quiet = os.environ.get("USEROPS_SINK_QUIET", "") not in ("", "0", "false")
    sinks = Sinks(
        http_port,
        smtp_port,
        WebhookSink(secret=os.environ.get("USEROPS_WEBHOOK_SECRET"), keep=keep, quiet=quiet),
        MailSink(keep=keep, folder=folder, quiet=quiet),
        host=os.environ.get("USEROPS_SINK_HOST", "127.0.0.1"),
    )
    await sinks.start()
    _log(
        "ready",
        note="LOCAL DEVELOPMENT SINKS, not for production",
        webhooks=f"{sinks.url}/hooks/<name>",
        received=f"{sinks.url}/received",
        mail=f"{sinks.url}/mail",
        smtp=f"{sinks.host}:{smtp_port}",
        mail_dir=str(folder),
    )
    try:
        await asyncio.Event().wait()
    finally:
        await sinks.stop()


if __name__ == "__main__":
    try:
        asyncio.run(_main())
    except KeyboardInterrupt:
        pass
