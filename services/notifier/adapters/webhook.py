"""The webhook channel: one signed POST per attempt (Standard Webhooks), with httpx.

Every attempt of one send carries the same `webhook-id` (the send key), a fresh
`webhook-timestamp` and `webhook-signature` = `v1,` + base64(HMAC-SHA256(secret,
"{id}.{timestamp}.{body}")), made by the reference `standardwebhooks` package; the body is the
same bytes on every attempt, so a receiver dedupes on `webhook-id`.

Classification (the job queue retries what is not permanent): 2xx → delivered; 408 and 429 →
retried (the receiver asks for it); any other 4xx → `PermanentError` (retrying cannot help); 5xx,
a timeout or a connection error → retried on the kind's backoff schedule.
"""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime
from typing import Final

import httpx
import orjson
from standardwebhooks import Webhook

from shared.runtime.errors import PermanentError
from shared.runtime.jobs import ClaimedJob

USER_AGENT: Final = "userops-notifier/1"
RETRIED_4XX: Final = frozenset({408, 429})


class DeliveryFailed(Exception):
    """A transient delivery failure (retried with backoff)."""


def mark_sniffio_absent() -> None:
    """httpcore imports `sniffio` on every request to learn the async library; when it is not
    installed, each failed import walks `sys.path` again (a third of the CPU of a delivery).
    Recording the module as absent makes that import fail at once. Called by the composition root."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


class WebhookSender:
    """Performs webhook jobs: `payload` holds `url` and the JSON `body`.

    Connections are spread over several small pools on purpose: for every request httpcore
    polls each idle connection of its pool to see whether it has expired, so one pool of 32 spent
    most of a delivery's CPU doing that (`bench/notifier.py --profile`).
    """

    def __init__(self, secret: str, timeout: float, pools: int = 8, per_pool: int = 4) -> None:
        self._signer = Webhook(secret)
        self._timeout = timeout
        self._clients = [
            httpx.AsyncClient(
                limits=httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool),
                headers={"user-agent": USER_AGENT},
            )
            for _ in range(pools)
        ]
        self._next = 0

    def headers(self, msg_id: str, body: bytes, at: datetime) -> dict[str, str]:
        """The Standard Webhooks headers of one attempt."""
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": self._signer.sign(msg_id, at, body.decode()),
            "content-type": "application/json",
        }

    async def perform(self, job: ClaimedJob) -> None:
        body = orjson.dumps(job.payload["body"])
        headers = self.headers(job.id, body, datetime.now(UTC))
        self._next = (self._next + 1) % len(self._clients)
        try:
            response = await self._clients[self._next].post(
                job.payload["url"], content=body, headers=headers, timeout=self._timeout
            )
        except httpx.TimeoutException as exc:
            raise DeliveryFailed(f"timeout after {self._timeout}s: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise DeliveryFailed(f"connection error: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        if 400 <= status < 500 and status not in RETRIED_4XX:
            raise PermanentError("webhook_rejected", f"HTTP {status} from the receiver")
        raise DeliveryFailed(f"HTTP {status} from the receiver")

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()
