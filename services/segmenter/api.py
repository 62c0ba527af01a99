"""The segmenter's admin API (bearer token): profiles, populations and analytics."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.segmenter.adapters import analytics
from services.segmenter.domain.lifecycle import STAGES


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


Engine = Annotated[AsyncEngine, Depends(_engine)]


def _today() -> date:
    return datetime.now(UTC).date()


def admin_router(auth: Any) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(auth)], tags=["segmenter"])

    @router.get("/users/{user_id:path}")
    async def get_user(user_id: str, engine: Engine) -> dict[str, Any]:
        """A user's profile: stage, activation, segments, traits, counters and stage history."""
        async with engine.connect() as conn:
            canonical = (
                await conn.execute(
                    text("SELECT user_id FROM identities WHERE anonymous_id = :id"), {"id": user_id}
                )
            ).scalar()
            uid = canonical or user_id
            row = (
                await conn.execute(
                    text(
                        "SELECT user_id, state, stage, activated, first_seen, last_activity_at "
                        "FROM profiles WHERE user_id = :id AND merged_into IS NULL"
                    ),
                    {"id": uid},
                )
            ).first()
            if row is None:
                raise HTTPException(404, {"code": "not_found", "message": f"no profile for user '{user_id}'"})
            history = (
                await conn.execute(
                    text(
                        "SELECT from_stage, to_stage, reason, at FROM stage_history "
                        "WHERE user_id = :id ORDER BY at, id"
                    ),
                    {"id": uid},
                )
            ).all()
            segments = (
                await conn.execute(
                    text("SELECT segment, since FROM segment_members WHERE user_id = :id ORDER BY segment"),
                    {"id": uid},
                )
            ).all()
        state: dict[str, Any] = orjson.loads(row.state)
        return {
            "userId": row.user_id,
            "stage": row.stage,
            "activated": row.activated,
            "firstSeen": row.first_seen,
            "lastActivityAt": row.last_activity_at,
            "segments": [{"segment": s.segment, "since": s.since} for s in segments],
            "history": [
                {"from": h.from_stage, "to": h.to_stage, "reason": h.reason, "at": h.at} for h in history
            ],
            "profile": state,
        }

    @router.get("/users")
    async def list_users(
        engine: Engine,
        stage: Annotated[str | None, Query(description="only users in this stage")] = None,
        segment: Annotated[str | None, Query(description="only members of this segment")] = None,
        after: Annotated[str | None, Query(description="the cursor of the previous page")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Users by stage and/or segment, ordered by user id, paginated with `after`."""
        if stage is not None and stage not in STAGES:
            raise HTTPException(400, {"code": "invalid", "message": f"stage must be one of {list(STAGES)}"})
        where = ["p.merged_into IS NULL", "p.user_id > :after"]
        params: dict[str, Any] = {"after": after or "", "limit": limit + 1}
        join = ""
        if stage is not None:
            where.append("p.stage = :stage")
            params["stage"] = stage
        if segment is not None:
            join = "JOIN segment_members m ON m.user_id = p.user_id AND m.segment = :segment"
            params["segment"] = segment
        sql = (
            f"SELECT p.user_id, p.stage, p.activated, p.last_activity_at FROM profiles p {join} "
            f"WHERE {' AND '.join(where)} ORDER BY p.user_id LIMIT :limit"
        )
        async with engine.connect() as conn:
            rows = (await conn.execute(text(sql), params)).all()
        page = rows[:limit]
        return {
            "users": [
                {
                    "userId": r.user_id,
                    "stage": r.stage,
                    "activated": r.activated,
                    "lastActivityAt": r.last_activity_at,
                }
                for r in page
            ],
            "next": page[-1].user_id if len(rows) > limit else None,
        }

    @router.get("/stages")
    async def stages(engine: Engine) -> dict[str, Any]:
        """How many users are in each stage now."""
        async with engine.connect() as conn:
            counts = await analytics.stage_counts(conn)
        return {"stages": {s: counts.get(s, 0) for s in STAGES}, "total": sum(counts.values())}

    @router.get("/segments")
    async def segments(engine: Engine) -> dict[str, Any]:
        """How many users are in each segment now."""
        async with engine.connect() as conn:
            return {"segments": await analytics.segment_counts(conn)}

    @router.get("/analytics/active")
    async def active(engine: Engine, day: date | None = None) -> dict[str, Any]:
        """DAU, WAU, MAU and stickiness (DAU/MAU) for a UTC day (default today)."""
        async with engine.connect() as conn:
            a = await analytics.active_users(conn, day or _today())
        return {"day": a.day, "dau": a.dau, "wau": a.wau, "mau": a.mau, "stickiness": a.stickiness}

    @router.get("/analytics/retention")
    async def retention(
        engine: Engine,
        interval: Literal["day", "week"] = "week",
        periods: Annotated[int, Query(ge=1, le=104)] = 8,
    ) -> dict[str, Any]:
        """Cohort retention: users by first active period, and the share active k periods later."""
        async with engine.connect() as conn:
            cohorts = await analytics.retention(conn, interval, periods, _today())
        return {
            "interval": interval,
            "cohorts": [
                {"start": c.start, "size": c.size, "retained": c.retained, "rates": c.rates} for c in cohorts
            ],
        }

    @router.get("/analytics/lifecycle")
    async def lifecycle(
        engine: Engine,
        interval: Literal["day", "week"] = "day",
        periods: Annotated[int, Query(ge=1, le=365)] = 14,
    ) -> dict[str, Any]:
        """PostHog-style lifecycle per period: new, returning, resurrecting, dormant."""
        async with engine.connect() as conn:
            rows = await analytics.lifecycle(conn, interval, periods, _today())
        return {
            "interval": interval,
            "periods": [
                {
                    "start": r.start,
                    "new": r.new,
                    "returning": r.returning,
                    "resurrecting": r.resurrecting,
                    "dormant": r.dormant,
                }
                for r in rows
            ],
        }

    @router.get("/analytics/transitions")
    async def transitions(engine: Engine, days: Annotated[int, Query(ge=1, le=365)] = 7) -> dict[str, Any]:
        """Stage transitions in the last `days` days, with each one's share of moves out of its stage."""
        since = datetime.now(UTC) - timedelta(days=days)
        async with engine.connect() as conn:
            rows = await analytics.transitions(conn, since)
        return {
            "since": since,
            "transitions": [
                {"from": t.from_stage, "to": t.to_stage, "count": t.count, "rate": t.rate} for t in rows
            ],
        }

    @router.get("/analytics/nps")
    async def nps(engine: Engine, weeks: Annotated[int, Query(ge=1, le=104)] = 12) -> dict[str, Any]:
        """NPS per ISO week (UTC), oldest first: each user's latest answer of a week counts once."""
        async with engine.connect() as conn:
            rows = await analytics.nps_weekly(conn, weeks, _today())
        return {
            "weeks": [
                {
                    "start": w.start,
                    "responses": w.responses,
                    "promoters": w.promoters,
                    "passives": w.passives,
                    "detractors": w.detractors,
                    "nps": w.nps,
                }
                for w in rows
            ],
        }

    return router
