"""Per-user tokens for the in-app inbox API, minted by the app's backend.

The app's backend (which knows who is logged in) mints a token for its user and hands it to the
app, which calls the notifier's `/v1/inbox` routes with `Authorization: Bearer <token>`. A token
names one user and an expiry and is signed with HMAC-SHA256 under `USEROPS_INBOX_SECRET` (a
different secret from the unsubscribe links', so neither kind of token passes for the other):

    token = b64url("v1" US user_id US "inbox" US expiry) + "." + b64url(HMAC-SHA256(secret, that))

Mint one from Python (`InboxTokens(secret).mint(user_id, now)`), from any language with the
recipe above, or from the shell for a try-out:

    USEROPS_INBOX_SECRET=... python -m services.notifier.adapters.inbox_tokens USER_ID [--ttl-hours 24]
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Final

from services.notifier.domain.unsubscribe import InvalidToken, UnsubscribeSigner

INBOX_SCOPE: Final = "inbox"

__all__ = ["INBOX_SCOPE", "InboxTokens", "InvalidToken"]


class InboxTokens:
    """Mints and verifies inbox tokens (`previous` secrets still verify, for rotation)."""

    def __init__(
        self, secret: bytes, ttl: timedelta = timedelta(hours=24), previous: tuple[bytes, ...] = ()
    ) -> None:
        self._signer = UnsubscribeSigner(secret, "https://inbox.invalid/", ttl, previous)

    def mint(self, user_id: str, now: datetime) -> str:
        return self._signer.token(user_id, INBOX_SCOPE, now)

    def verify(self, token: str, now: datetime) -> str:
        """The user id of a valid token; `InvalidToken` otherwise."""
        claim = self._signer.verify(token, now)
        if claim.scope != INBOX_SCOPE:
            raise InvalidToken("not an inbox token")
        return claim.user_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Mint an inbox token for one user.")
    parser.add_argument("user_id")
    parser.add_argument("--ttl-hours", type=float, default=24.0)
    args = parser.parse_args(argv)
    secret = os.environ.get("USEROPS_INBOX_SECRET", "")
    if len(secret.encode()) < 32:
        print("error: set USEROPS_INBOX_SECRET (at least 32 bytes)", file=sys.stderr)
        return 2
    tokens = InboxTokens(secret.encode(), timedelta(hours=args.ttl_hours))
    print(tokens.mint(args.user_id, datetime.now(UTC)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
