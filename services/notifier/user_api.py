"""User-facing routes: one-click unsubscribe (RFC 8058) and the in-app inbox.

Unsubscribe: `GET /v1/unsubscribe?token=` shows what the link does and changes nothing (mail
scanners fetch links); `POST` (the one-click request, body `List-Unsubscribe=One-Click`) records
the preference under the user's lock. A token used twice is one change. Bad or expired token →
401; unknown user → 404.

Inbox: `Authorization: Bearer <inbox token>` (minted by the app's backend,
`adapters/inbox_tokens.py`); the token names the user. Bad token → 401; unknown user → 404.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.notifier.adapters import queries, records, store
from services.notifier.adapters.inbox_tokens import InboxTokens
from services.notifier.api import MAX_KEY, Sessions, not_found
from services.notifier.api_models import (
    InboxMessage,
    InboxPage,
    ReadResult,
    UnreadCount,
    UnsubscribeStatus,
    errors,
)
from services.notifier.domain.projection import Projection, apply
from services.notifier.domain.unsubscribe import (
    InvalidToken,
    UnsubscribeClaim,
    UnsubscribeSigner,
    unsubscribe_input,
)

Clock = Callable[[], datetime]
MAX_TOKEN = 2000
_bearer = HTTPBearer(auto_error=False)
TOKEN = Query(min_length=1, max_length=MAX_TOKEN, description="the signed token of the link")


def unauthorized(message: str) -> HTTPException:
    return HTTPException(
        401, {"code": "unauthorized", "message": message}, headers={"WWW-Authenticate": "Bearer"}
    )


def user_router(signer: UnsubscribeSigner, tokens: InboxTokens, clock: Clock) -> APIRouter:
    router = APIRouter(prefix="/v1")

    def claim_of(token: str) -> UnsubscribeClaim:
        try:
            return signer.verify(token, clock())
        except InvalidToken as exc:
            raise unauthorized(f"invalid unsubscribe link: {exc}") from exc

    @router.get("/unsubscribe", tags=["preferences"], responses=errors(400, 401, 404))
    async def unsubscribe_status(db: Sessions, token: str = TOKEN) -> UnsubscribeStatus:
        """What the link unsubscribes from and whether the user is still subscribed (no change)."""
        claim = claim_of(token)
        async with db() as session:
            locked = await store.lock_users(session, [claim.user_id], create=False)
        if claim.user_id in locked.missing:
            raise not_found("unknown user")
        p = locked.projections.get(claim.user_id) or Projection(claim.user_id)
        return UnsubscribeStatus(scope=claim.scope, subscribed=claim.scope not in p.unsubscribed)

    @router.post("/unsubscribe", tags=["preferences"], responses=errors(400, 401, 404))
    async def unsubscribe(db: Sessions, token: str = TOKEN) -> UnsubscribeStatus:
        """One-click unsubscribe (RFC 8058): idempotent; the link's scope is a channel, a topic or all."""
        claim = claim_of(token)
        now = clock()
        change = unsubscribe_input(claim, token, now)
        async with db() as session, session.begin():
            locked = await store.lock_users(session, [claim.user_id], create=False)
            if claim.user_id in locked.missing:
                raise not_found("unknown user")
            if await records.add_preference_change(
                session, change.input_id, change.user_id, change.scope, change.subscribed, change.at
            ):
                p = locked.projections.get(claim.user_id) or Projection(claim.user_id)
                apply(p, change)
                await store.save_projections(session, [p])
        return UnsubscribeStatus(scope=claim.scope, subscribed=False)

    async def inbox_user(
        db: Sessions, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> str:
        if credentials is None:
            raise unauthorized("an inbox token is required (Authorization: Bearer ...)")
        try:
            user_id = tokens.verify(credentials.credentials, clock())
        except InvalidToken as exc:
            raise unauthorized(f"invalid inbox token: {exc}") from exc
        async with db() as session:
            if not await queries.user_exists(session, user_id):
                raise not_found("unknown user")
        return user_id

    user_of = Depends(inbox_user)

    @router.get("/inbox", tags=["inbox"], responses=errors(400, 401, 404))
    async def inbox(
        db: Sessions,
        user_id: str = user_of,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        before: Annotated[
            datetime | None, Query(description="page: messages created before this instant")
        ] = None,
    ) -> InboxPage:
        """The user's in-app messages, newest first, and the unread count."""
        async with db() as session:
            rows = await queries.inbox_list(session, user_id, limit, before)
            unread = await queries.unread_count(session, user_id)
        return InboxPage(messages=[InboxMessage(**r) for r in rows], unread=unread)

    @router.get("/inbox/unread_count", tags=["inbox"], responses=errors(400, 401, 404))
    async def unread(db: Sessions, user_id: str = user_of) -> UnreadCount:
        async with db() as session:
            return UnreadCount(unread=await queries.unread_count(session, user_id))

    @router.post("/inbox/{message_id}/read", tags=["inbox"], responses=errors(400, 401, 404))
    async def read(
        db: Sessions, message_id: Annotated[str, Path(max_length=MAX_KEY)], user_id: str = user_of
    ) -> ReadResult:
        """Mark one message read (idempotent)."""
        async with db() as session, session.begin():
            await store.lock_users(session, [user_id], create=False)
            at = await queries.mark_read(session, user_id, message_id, clock())
        if at is None:
            raise not_found("no such message in this inbox")
        return ReadResult(id=message_id, read_at=at)

    return router
