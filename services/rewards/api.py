"""The rewards API (admin bearer token; errors `{"code","message"}`).

Reads: a user's balance, tier, badges, streak and expiring lots; their paginated statement;
budget status. Writes (redemptions and adjustments) take the same per-user lock as the consumer
and the timers, call the same `decide` through `RewardsUnit`, and write ledger, state, outbox and
timers in one transaction. Both are idempotent by `Idempotency-Key`: the same key with the same
body gets the original answer, with another body a 422.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.adapters import budgets, reads, requests, store
from services.rewards.adapters.state_cache import StateCache
from services.rewards.config import RewardsConfig
from services.rewards.consumer import budget_limits
from services.rewards.domain.inputs import AdjustmentInput, RedemptionInput, RewardsInput
from services.rewards.domain.state import UserRewardsState
from services.rewards.metrics import RewardsMetrics
from services.rewards.unit import RewardsUnit
from services.rewards.views import (
    Adjustment,
    AdjustmentRequest,
    BudgetStatus,
    ErrorBody,
    Redemption,
    RedemptionRequest,
    Statement,
    UserRewards,
    balance,
    statement_line,
    user_rewards,
)
from shared.ids import input_id
from shared.runtime.db import session_factory

REDEMPTIONS: Final = "rewards.redemptions"
ADJUSTMENTS: Final = "rewards.adjustments"
"""Input-id sources of API commands (`shared.ids.input_id(source, user, key)`)."""

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},
    401: {"model": ErrorBody},
    404: {"model": ErrorBody, "description": "Unknown user (or redemption)."},
}


class RuleEconomy(BaseModel):
    awarded: int
    reversed: int
    expired: int


class EconomyView(BaseModel):
    """`GET /v1/economy`: points awarded, redeemed (confirmed) and expired over the whole ledger."""

    awarded: int
    redeemed: int
    expired: int
    by_rule: dict[str, RuleEconomy]
    budgets: list[BudgetStatus]


IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=200)]


@dataclass(frozen=True)
class ApiContext:
    cfg: RewardsConfig
    rewards_topic: str
    clock: Callable[[], datetime]
    metrics: RewardsMetrics | None = None
    cache: StateCache | None = None  # the consumer's decoded states (checked by version)


def _fail(status: int, code: str, message: str) -> HTTPException:
    return HTTPException(status, {"code": code, "message": message})


def _hash(body: BaseModel) -> str:
    return hashlib.sha256(orjson.dumps(body.model_dump(), option=orjson.OPT_SORT_KEYS)).hexdigest()


def _answer(status: int, model: BaseModel | dict[str, Any]) -> JSONResponse:
    body = model if isinstance(model, dict) else model.model_dump(mode="json", by_alias=True)
    return JSONResponse(body, status_code=status)


def _encode_cursor(at: datetime, tx_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([at.isoformat(), tx_id])).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, tx_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(at), str(tx_id)
    except Exception as exc:
        raise _fail(400, "invalid_cursor", "the cursor is not one this API returned") from exc


def admin_router(auth: Any, ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(auth)], tags=["rewards"], responses=_ERRORS)
    cfg = ctx.cfg

    def sessions(request: Request) -> AsyncSession:
        return session_factory(request.app.state.engine)()

    async def locked_state(session: AsyncSession, user_id: str) -> tuple[RewardsUnit, UserRewardsState]:
        locked = await store.lock_users(session, [user_id], cache=ctx.cache)
        state = locked.states.get(user_id)
        if state is None:
            raise _fail(404, "not_found", f"no rewards account for user '{user_id}'")
        return RewardsUnit.over(cfg, locked, {}, ctx.rewards_topic, cache=ctx.cache), state

    async def decide_one(session: AsyncSession, unit: RewardsUnit, inp: RewardsInput) -> Any:
        unit.budgets = await budgets.lock_budgets(session, budget_limits(cfg, [inp]))
        decision = unit.apply(inp, ctx.clock())
        await unit.write(session)
        return decision

    def count(session: AsyncSession, unit: RewardsUnit, *outcomes: str) -> None:
        if ctx.metrics is not None:
            ctx.metrics.count_on_commit(session, unit.tally, outcomes)

    @router.get("/users/{user_id:path}/statement", response_model=Statement)
    async def get_statement(
        user_id: str,
        request: Request,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=500)] = None,
    ) -> Any:
        """The user's ledger, newest first, each line with a readable description."""
        before = _decode_cursor(cursor) if cursor else None
        async with sessions(request) as session:
            if await store.read_state(session, user_id) is None:
                raise _fail(404, "not_found", f"no rewards account for user '{user_id}'")
            rows = await reads.statement(session, user_id, limit, before)
        nxt = _encode_cursor(rows[-1].at, rows[-1].id) if len(rows) == limit else None
        page = Statement(user_id=user_id, lines=[statement_line(r, cfg) for r in rows], next_cursor=nxt)
        return _answer(200, page)

    @router.get("/users/{user_id:path}", response_model=UserRewards, response_model_by_alias=True)
    async def get_user(user_id: str, request: Request) -> Any:
        """Balance (available, pending, held), tier, badges, streak and soonest-expiring lots."""
        async with sessions(request) as session:
            state = await store.read_state(session, user_id)
        if state is None:
            raise _fail(404, "not_found", f"no rewards account for user '{user_id}'")
        return _answer(200, user_rewards(state, cfg, ctx.clock()))

    @router.post(
        "/users/{user_id:path}/redemptions",
        status_code=201,
        response_model=Redemption,
        responses={409: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    )
    async def reserve(user_id: str, body: RedemptionRequest, key: IdempotencyKey, request: Request) -> Any:
        """Reserve points (a hold, released automatically if not confirmed within the hold TTL).
        409 `insufficient_balance`; the same key with another body is a 422."""
        digest = _hash(body)
        async with sessions(request) as session, session.begin():
            unit, _ = await locked_state(session, user_id)
            found = await requests.find_redemption(session, user_id, key)
            if found is not None:
                if found.request_hash != digest:
                    count(session, unit, "idempotency_conflict")
                    raise _fail(
                        422, "idempotency_conflict", "this Idempotency-Key was used with another body"
                    )
                return _answer(found.status_code, found.response)
            cmd = RedemptionInput(
                input_id(REDEMPTIONS, user_id, key), user_id, "reserve", ctx.clock(), amount=body.points
            )
            d = await decide_one(session, unit, cmd)
            hold = d.state.book.holds.get(d.hold_id or "")
            if d.refused or hold is None:
                code = d.refused or "hold_not_open"
                status = 409 if code == "insufficient_balance" else 422
                answer: dict[str, Any] = {"code": code, "message": _refusal(code, body.points, d.state)}
                stored = requests.StoredRequest(digest, status, answer, d.hold_id, "refused", body.points)
                await requests.save_redemption(session, user_id, key, stored, None)
                count(session, unit, code)
                return _answer(status, answer)
            made = Redemption(
                redemption_id=key,
                hold_id=hold.id,
                state="held",
                points=hold.amount,
                expires_at=hold.expires_at,
                balance=balance(d.state),
            )
            answer = made.model_dump(mode="json", by_alias=True)
            stored = requests.StoredRequest(digest, 201, answer, hold.id, "held", hold.amount)
            await requests.save_redemption(session, user_id, key, stored, hold.expires_at)
            count(session, unit, "reserved")
            return _answer(201, answer)

    async def settle(user_id: str, key: str, action: str, request: Request) -> Any:
        async with sessions(request) as session, session.begin():
            unit, _ = await locked_state(session, user_id)
            found = await requests.find_redemption(session, user_id, key)
            if found is None or found.state == "refused":
                raise _fail(404, "not_found", f"no redemption '{key}' for user '{user_id}'")
            done = {"confirm": "confirmed", "release": "released"}[action]
            if found.state == done:
                return _answer(200, found.response)
            if found.state != "held":
                raise _fail(409, "hold_not_open", f"the redemption is {found.state}")
            iid = input_id(REDEMPTIONS, user_id, f"{key}:{action}")
            cmd = RedemptionInput(iid, user_id, action, ctx.clock(), hold_id=found.hold_id)  # type: ignore[arg-type]
            d = await decide_one(session, unit, cmd)
            state = "expired" if d.refused == "hold_expired" else (done if d.refused is None else found.state)
            hold = d.state.book.holds.get(found.hold_id or "")
            made = Redemption(
                redemption_id=key,
                hold_id=found.hold_id or "",
                state=state,
                points=found.points,
                expires_at=hold.expires_at if hold else None,
                balance=balance(d.state),
            )
            answer = made.model_dump(mode="json", by_alias=True)
            stored = requests.StoredRequest(
                found.request_hash, 200, answer, found.hold_id, state, found.points
            )
            await requests.save_redemption(session, user_id, key, stored, None)
            count(
                session,
                unit,
                state if d.refused in (None, "hold_expired") else (d.refused or "hold_not_open"),
            )
            if d.refused == "hold_expired":
                return _answer(
                    409, {"code": "hold_expired", "message": "the hold expired; its points were released"}
                )
            if d.refused:
                raise _fail(409, d.refused, f"the redemption cannot be {done}")
            return _answer(200, answer)

    conflict: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}, 409: {"model": ErrorBody}}

    @router.post(
        "/users/{user_id:path}/redemptions/{key}/confirm", response_model=Redemption, responses=conflict
    )
    async def confirm(user_id: str, key: str, request: Request) -> Any:
        """Redeem a held reservation (409 if it was released or expired)."""
        return await settle(user_id, key, "confirm", request)

    @router.post(
        "/users/{user_id:path}/redemptions/{key}/release", response_model=Redemption, responses=conflict
    )
    async def release(user_id: str, key: str, request: Request) -> Any:
        """Give a held reservation's points back."""
        return await settle(user_id, key, "release", request)

    @router.post(
        "/users/{user_id:path}/adjustments",
        status_code=201,
        response_model=Adjustment,
        responses={409: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    )
    async def adjust(user_id: str, body: AdjustmentRequest, key: IdempotencyKey, request: Request) -> Any:
        """Credit points, or take back (part of) an earlier award named by `reverses` (a linked
        reversal: never more than the award; what was already spent becomes owed)."""
        digest = _hash(body)
        async with sessions(request) as session, session.begin():
            unit, _ = await locked_state(session, user_id)
            found = await requests.find_adjustment(session, user_id, key)
            if found is not None:
                if found.request_hash != digest:
                    raise _fail(
                        422, "idempotency_conflict", "this Idempotency-Key was used with another body"
                    )
                return _answer(found.status_code, found.response)
            cmd = AdjustmentInput(
                input_id(ADJUSTMENTS, user_id, key),
                user_id,
                ctx.clock(),
                body.points,
                body.reason,
                body.actor,
                body.reverses,
            )
            d = await decide_one(session, unit, cmd)
            if d.refused:
                status = 409 if d.refused == "nothing_to_reverse" else 422
                answer: dict[str, Any] = {
                    "code": d.refused,
                    "message": _refusal(d.refused, body.points, d.state),
                }
            else:
                status = 201
                made = Adjustment(
                    transaction_id=d.hold_id or "", points=body.points, balance=balance(d.state)
                )
                answer = made.model_dump(mode="json", by_alias=True)
            await requests.save_adjustment(
                session, user_id, key, requests.StoredRequest(digest, status, answer)
            )
            count(session, unit)
            return _answer(status, answer)

    def budget_statuses(rows: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
        out = []
        for rule in cfg.rules:
            if rule.budget is not None:
                spent = rows.get(rule.id, (rule.budget.limit, 0))[1]
                out.append(
                    BudgetStatus(
                        rule_id=rule.id,
                        limit=rule.budget.limit,
                        spent=spent,
                        remaining=max(0, rule.budget.limit - spent),
                        overflow=rule.budget.overflow,
                    ).model_dump(mode="json", by_alias=True)
                )
        return out

    @router.get("/budgets", response_model=list[BudgetStatus])
    async def list_budgets(request: Request) -> Any:
        """Every budgeted rule: its limit, points spent and remaining."""
        async with sessions(request) as session:
            rows = await budgets.budget_rows(session)
        return JSONResponse(budget_statuses(rows))

    @router.get("/economy", response_model=EconomyView)
    async def get_economy(request: Request) -> Any:
        """The points economy over the whole ledger: points awarded, redeemed (confirmed) and
        expired in total; per rule awarded, reversed and expired; and every budget's status."""
        async with sessions(request) as session:
            totals = await reads.economy(session)
            rows = await budgets.budget_rows(session)
        return JSONResponse(
            {
                "awarded": totals.awarded,
                "redeemed": totals.redeemed,
                "expired": totals.expired,
                "by_rule": {
                    rule: {"awarded": t.awarded, "reversed": t.reversed, "expired": t.expired}
                    for rule, t in totals.by_rule.items()
                },
                "budgets": budget_statuses(rows),
            }
        )

    return router


def _refusal(code: str, points: int, state: UserRewardsState) -> str:
    return {
        "insufficient_balance": f"{points} points asked, {state.book.balances.available} available",
        "idempotency_conflict": "this Idempotency-Key was used with another amount",
        "invalid_amount": "a debit must name the award it corrects (`reverses`)",
        "unknown_award": "the award named by `reverses` is not one of this user's live awards",
        "nothing_to_reverse": "nothing is left of that award to take back",
    }.get(code, code)
