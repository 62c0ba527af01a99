"""Signed one-click unsubscribe links (DESIGN.md §6; RFC 8058 for email).

A token names a user, a scope and an expiry, and is signed with HMAC-SHA256:

    token = b64url(payload) + "." + b64url(HMAC-SHA256(secret, b64url(payload)))
    payload = "v1" US user_id US scope US expiry (unix seconds)     (US = U+001F)

A scope is `all`, `channel:<email|webhook|inapp>` or `topic:<name>`. `verify` compares
signatures in constant time and accepts any of several secrets (so a secret can be rotated
without breaking links already sent). Tokens are opaque to the user and carry no secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import urlencode, urlsplit, urlunsplit

from services.notifier.domain.inputs import PreferenceChanged
from shared.ids import input_id

PREFERENCES_SOURCE: Final = "userops.notifier.preferences"
"""The input source of preference changes made through unsubscribe links."""

_SEP: Final = "\x1f"
_VERSION: Final = "v1"
MIN_SECRET_BYTES: Final = 32


class InvalidToken(ValueError):
    """A token that is malformed, forged, or expired (the message says which)."""


@dataclass(frozen=True, slots=True)
class UnsubscribeClaim:
    """What a valid token allows: unsubscribe `user_id` from `scope`."""

    user_id: str
    scope: str
    expires_at: datetime


def scope_for(*, channel: str | None = None, topic: str | None = None) -> str:
    """The scope string of a channel or a topic (exactly one), or `all` when neither is given."""
    if channel and topic:
        raise ValueError("a scope is a channel or a topic, not both")
    return f"channel:{channel}" if channel else f"topic:{topic}" if topic else "all"


@dataclass(frozen=True, slots=True)
class UnsubscribeSigner:
    """Signs tokens and builds links: `secret` (≥ 32 bytes) signs, `base_url` receives them.

    `previous` secrets still verify (rotation); links expire after `ttl`.
    """

    secret: bytes
    base_url: str
    ttl: timedelta = timedelta(days=90)
    previous: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the unsubscribe secret must be at least {MIN_SECRET_BYTES} bytes")

    def token(self, user_id: str, scope: str, now: datetime) -> str:
        """A token for `user_id` and `scope`, valid until `now + ttl` (whole seconds)."""
        if _SEP in user_id or _SEP in scope:
            raise ValueError("user id and scope must not contain U+001F")
        expiry = int((now + self.ttl).timestamp())
        payload = _b64(_SEP.join((_VERSION, user_id, scope, str(expiry))).encode())
        return f"{payload}.{_b64(_sign(self.secret, payload))}"

    def url(self, user_id: str, scope: str, now: datetime) -> str:
        """The one-click link: `base_url` with `token=` added to its query."""
        parts = urlsplit(self.base_url)
        query = urlencode({"token": self.token(user_id, scope, now)})
        return urlunsplit(parts._replace(query=f"{parts.query}&{query}" if parts.query else query))

    def verify(self, token: str, now: datetime) -> UnsubscribeClaim:
        """The claim of a valid token; `InvalidToken` otherwise."""
        return verify(token, (self.secret, *self.previous), now)


def verify(token: str, secrets: Sequence[bytes], now: datetime) -> UnsubscribeClaim:
    """Check a token's signature against each secret (constant time) and its expiry."""
    payload, dot, signature = token.partition(".")
    if not dot or not payload or not signature:
        raise InvalidToken("malformed token")
    try:
        given = _unb64(signature)
        fields = _unb64(payload).decode("utf-8").split(_SEP)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidToken("malformed token") from exc
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(_sign(secret, payload), given)
    if not matched:
        raise InvalidToken("bad signature")
    if len(fields) != 4 or fields[0] != _VERSION or not fields[3].isdigit():
        raise InvalidToken("malformed token")
    _, user_id, scope, expiry = fields
    expires_at = datetime.fromtimestamp(int(expiry), UTC)
    if now >= expires_at:
        raise InvalidToken("expired token")
    return UnsubscribeClaim(user_id, scope, expires_at)


def unsubscribe_input(claim: UnsubscribeClaim, token: str, at: datetime) -> PreferenceChanged:
    """The preference change a verified link makes. Its input id is derived from the token, so
    using the same link twice is one change. (Per RFC 8058 the API applies it on POST only, so a
    mail scanner fetching the link does not unsubscribe anyone.)"""
    digest = hashlib.sha256(token.encode("ascii", "replace")).hexdigest()[:32]
    return PreferenceChanged(
        input_id(PREFERENCES_SOURCE, claim.user_id, f"unsubscribe:{digest}"),
        claim.user_id,
        claim.scope,
        False,
        at,
    )


def one_click_headers(url: str) -> dict[str, str]:
    """The RFC 8058 email headers for a one-click unsubscribe link."""
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def _sign(secret: bytes, payload: str) -> bytes:
    return hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
