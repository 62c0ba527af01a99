"""The notifier's HTTP API: the admin routes (bearer token) and the user-facing routes.

Admin (`Authorization: Bearer <USEROPS_ADMIN_TOKEN>`): campaigns, a campaign's report,
failed deliveries and their replay, a user's message history. User-facing: one-click
unsubscribe (signed link; RFC 8058 POST) and the in-app inbox (per-user HMAC token, see
`adapters/inbox_tokens.py`). Every error is `{"code", "message"}`. Every write takes the user's
row lock (`shared.runtime.locks`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notifier.adapters import queries
from services.notifier.api_models import (
    CampaignInfo,
    CampaignReportBody,
    FailedDelivery,
    GoalCounts,
    MessageRecord,
    ReplayResult,
    UpliftBody,
    VariantInfo,
    errors,
)
from services.notifier.config import NotifierConfig
from services.notifier.domain.report import campaign_report
from services.notifier.domain.uplift import Uplift
from shared.runtime import jobs
from shared.runtime.db import session_factory

MAX_KEY = 200


def sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    """The API's session factory over the engine the service's lifespan created."""
    made: async_sessionmaker[AsyncSession] | None = getattr(request.app.state, "api_sessions", None)
    if made is None:
        made = session_factory(request.app.state.engine)
        request.app.state.api_sessions = made
    return made


Sessions = Annotated[async_sessionmaker[AsyncSession], Depends(sessions)]


def not_found(message: str) -> HTTPException:
    return HTTPException(404, {"code": "not_found", "message": message})


def _uplift(u: Uplift | None) -> UpliftBody | None:
    if u is None:
        return None
    return UpliftBody(
        treatment_entries=u.treatment_n,
        treatment_goals=u.treatment_goals,
        holdout_entries=u.holdout_n,
        holdout_goals=u.holdout_goals,
        treatment_rate=u.treatment_rate,
        holdout_rate=u.holdout_rate,
        difference=u.difference,
        interval_low=u.interval.low if u.interval else None,
        interval_high=u.interval.high if u.interval else None,
        confidence=u.confidence,
        significant=u.significant,
    )


def admin_router(auth: Any, cfg: NotifierConfig) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(auth)], tags=["admin"])

    @router.get("/campaigns", responses=errors(400, 401))
    async def list_campaigns() -> list[CampaignInfo]:
        """Every campaign of config/notifier.yaml (enabled or not)."""
        return [
            CampaignInfo(
                name=c.name,
                description=c.description,
                enabled=c.enabled,
                topic=c.topic,
                trigger=next(iter(c.trigger.model_dump(exclude_none=True)), "unknown"),
                channel=c.channel,
                endpoint=c.endpoint,
                delay_seconds=c.delay.total_seconds(),
                holdout=c.holdout,
                variants=[VariantInfo(name=v.name, weight=v.weight) for v in c.variants],
                has_goal=c.goal is not None,
            )
            for c in cfg.campaigns
        ]

    @router.get("/campaigns/{name}/report", responses=errors(400, 401, 404))
    async def report(name: Annotated[str, Path(max_length=MAX_KEY)], db: Sessions) -> CampaignReportBody:
        """Outcomes by variant, goal counts per group, and the uplift (treatment vs holdout,
        difference with Newcombe's 95 % interval)."""
        if not any(c.name == name for c in cfg.campaigns):
            raise not_found(f"no campaign named {name!r}")
        async with db() as session:
            counted = await queries.campaign_outcomes(session, name)
            goals = await queries.campaign_goals(session, name)
        outcomes = [(variant, kind) for variant, kind, n in counted for _ in range(n)]
        entries = [(group, i < x) for group, n, x in goals for i in range(n)]
        r = campaign_report(name, outcomes, entries)
        return CampaignReportBody(
            campaign=name,
            outcomes={v: dict(c) for v, c in r.outcomes.items()},
            totals=dict(r.totals),
            goals={
                g: GoalCounts(entries=c.entries, converted=c.converted, rate=c.converted / c.entries)
                for g, c in r.goals.items()
            },
            uplift=_uplift(r.uplift),
            variant_uplift={v: u for v, u0 in r.variant_uplift.items() if (u := _uplift(u0)) is not None},
        )

    @router.get("/deliveries/failed", responses=errors(400, 401))
    async def failed(
        db: Sessions,
        campaign: Annotated[str | None, Query(max_length=MAX_KEY)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[FailedDelivery]:
        """Failed sends, earliest first; `replayable` ones failed in their channel."""
        async with db() as session:
            rows = await queries.failed_deliveries(session, campaign, limit)
        return [FailedDelivery(**r) for r in rows]

    @router.post("/deliveries/{send_key}/replay", responses=errors(400, 401, 404, 409))
    async def replay(send_key: Annotated[str, Path(max_length=MAX_KEY)], db: Sessions) -> ReplayResult:
        """Queue a failed delivery again (same send key: the receiver can still dedupe)."""
        async with db() as session, session.begin():
            state = await queries.send_state(session, send_key)
            if state is None:
                raise not_found(f"no send {send_key!r}")
            if state[1] != "failed":
                raise HTTPException(
                    409, {"code": "not_replayable", "message": f"send {send_key!r} has no failed delivery"}
                )
            await jobs.replay_failed(session, ids=[send_key])
            await queries.mark_queued(session, send_key)
        return ReplayResult(send_key=send_key, replayed=True)

    @router.get("/users/{user_id:path}/messages", responses=errors(400, 401, 404))
    async def messages(
        user_id: Annotated[str, Path(max_length=MAX_KEY)],
        db: Sessions,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[MessageRecord]:
        """The user's sends, newest first: what was sent, capped, suppressed, deferred, failed."""
        async with db() as session:
            if not await queries.user_exists(session, user_id):
                raise not_found(f"no user {user_id!r}")
            rows = await queries.user_messages(session, user_id, limit)
        return [MessageRecord(**r) for r in rows]

    return router
