"""Read a report's data from the services' admin APIs (async httpx, bearer token).

A service that does not answer, refuses the token or answers something unexpected raises
`ServiceError` naming the service, its URL and what went wrong; with `allow_missing` the
sections it feeds become `Missing` instead, and the report says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final, TypeVar
from urllib.parse import quote

import httpx

from scripts.report import derive
from scripts.report.data import (
    ActiveDay,
    Budget,
    Campaign,
    CohortRow,
    CoreUsers,
    Economy,
    Funnel,
    Missing,
    NpsWeek,
    PointsTotals,
    ReportData,
    StagePoint,
    Uplift,
)

T = TypeVar("T")

DEFAULT_PORTS: Final = {"segmenter": 8001, "rewards": 8002, "notifier": 8003}
DEV_ADMIN_TOKEN: Final = "dev-admin-token"


class ServiceError(Exception):
    """A service the report reads did not give what the report needs."""

    def __init__(self, service: str, url: str, reason: str) -> None:
        super().__init__(f"{service} at {url}: {reason}")
        self.service = service
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class Endpoints:
    """Where the services answer and the admin token they take."""

    segmenter: str
    rewards: str
    notifier: str
    token: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Endpoints:
        """`USEROPS_<SERVICE>_URL`, else `http://127.0.0.1:$USEROPS_<SERVICE>_PORT` (8001-8003);
        the token from `USEROPS_ADMIN_TOKEN` (default: the local development token)."""

        def url(service: str) -> str:
            key = service.upper()
            port = env.get(f"USEROPS_{key}_PORT") or str(DEFAULT_PORTS[service])
            return env.get(f"USEROPS_{key}_URL") or f"http://127.0.0.1:{port}"

        return cls(
            segmenter=url("segmenter").rstrip("/"),
            rewards=url("rewards").rstrip("/"),
            notifier=url("notifier").rstrip("/"),
            token=env.get("USEROPS_ADMIN_TOKEN") or DEV_ADMIN_TOKEN,
        )


class ServiceClient:
    """GETs JSON from one service, turning every failure into a `ServiceError`."""

    def __init__(self, service: str, base_url: str, http: httpx.AsyncClient) -> None:
        self.service = service
        self.base_url = base_url
        self._http = http

    def error(self, reason: str) -> ServiceError:
        return ServiceError(self.service, self.base_url, reason)

    async def get(self, path: str, *, absent_ok: bool = False, **params: Any) -> Any:
        """The JSON answer of `GET path`; None for a 404 when `absent_ok`."""
        try:
            response = await self._http.get(self.base_url + path, params=params)
        except httpx.ConnectError as exc:
            raise self.error(
                f"not reachable (GET {path}: {exc or 'connection refused'}); is it running?"
            ) from exc
        except httpx.TimeoutException as exc:
            raise self.error(f"GET {path} timed out") from exc
        except httpx.HTTPError as exc:
            raise self.error(f"GET {path} failed: {exc}") from exc
        if response.status_code == 404 and absent_ok:
            return None
        if response.status_code in (401, 403):
            raise self.error(
                f"refused the admin token (HTTP {response.status_code}); set USEROPS_ADMIN_TOKEN"
            )
        if response.status_code >= 400:
            raise self.error(f"GET {path} answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            return response.json()
        except ValueError as exc:
            raise self.error(f"GET {path} answered something that is not JSON") from exc

    async def read(self, path: str, parse: Callable[[Any], T], **params: Any) -> T:
        """`GET path` parsed by `parse`; an answer of another shape is a `ServiceError`."""
        body = await self.get(path, **params)
        try:
            return parse(body)
        except (KeyError, TypeError, ValueError) as exc:
            raise self.error(
                f"GET {path} answered an unexpected shape ({type(exc).__name__}: {exc})"
            ) from exc


def _transitions(body: Any) -> tuple[datetime, list[derive.Transition]]:
    return datetime.fromisoformat(body["since"]), [
        derive.Transition(t["from"], t["to"], int(t["count"])) for t in body["transitions"]
    ]


async def _stages_and_funnel(
    seg: ServiceClient, now: datetime, weeks: int, funnel_days: int
) -> tuple[list[StagePoint], Funnel]:
    current = await seg.read("/v1/stages", lambda b: {str(k): int(v) for k, v in b["stages"].items()})
    spans = sorted({7 * k for k in range(1, weeks)} | {funnel_days})
    answers = await asyncio.gather(
        *(seg.read("/v1/analytics/transitions", _transitions, days=d) for d in spans)
    )
    by_days = dict(zip(spans, answers, strict=True))
    windows = [by_days[7 * k] for k in range(1, weeks)]
    return derive.stage_series(current, now, windows), derive.activation_funnel(
        funnel_days, by_days[funnel_days][1]
    )


def _cohorts(body: Any) -> list[CohortRow]:
    return [
        CohortRow(date.fromisoformat(c["start"]), int(c["size"]), [float(r) for r in c["rates"]])
        for c in body["cohorts"]
    ]


def _active(body: Any) -> ActiveDay:
    return ActiveDay(
        date.fromisoformat(body["day"]),
        int(body["dau"]),
        int(body["wau"]),
        int(body["mau"]),
        float(body["stickiness"]),
    )


async def _active_days(seg: ServiceClient, today: date, days: int) -> list[ActiveDay]:
    wanted = [today - timedelta(days=i) for i in range(days - 1, -1, -1)]
    return list(
        await asyncio.gather(*(seg.read("/v1/analytics/active", _active, day=d.isoformat()) for d in wanted))
    )


async def _core(seg: ServiceClient, today: date) -> CoreUsers:
    segments = await seg.read("/v1/segments", lambda b: {str(k): int(v) for k, v in b["segments"].items()})
    month = await seg.read("/v1/analytics/active", _active, day=today.isoformat())
    return CoreUsers(core=segments.get("core", 0), mau=month.mau, segments=segments)


def _nps(body: Any) -> list[NpsWeek]:
    return [
        NpsWeek(
            date.fromisoformat(w["start"]),
            int(w["responses"]),
            int(w["promoters"]),
            int(w["passives"]),
            int(w["detractors"]),
            None if w["nps"] is None else float(w["nps"]),
        )
        for w in body["weeks"]
    ]


def _budgets(body: Any) -> list[Budget]:
    return [Budget(b["ruleId"], int(b["limit"]), int(b["spent"]), int(b["remaining"])) for b in body]


def _rule_points(value: Any) -> int:
    """A rule's awarded points in `/v1/economy`'s `by_rule`: a number, or an object with `awarded`."""
    return int(value["awarded"]) if isinstance(value, dict) else int(value)


async def _economy(rewards: ServiceClient) -> Economy:
    budgets = await rewards.read("/v1/budgets", _budgets)
    body = await rewards.get("/v1/economy", absent_ok=True)
    if body is None:
        return Economy(totals=None, by_rule={}, budgets=budgets)
    try:
        totals = PointsTotals(int(body["awarded"]), int(body["redeemed"]), int(body["expired"]))
        by_rule = {str(k): _rule_points(v) for k, v in (body.get("by_rule") or {}).items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise rewards.error(
            f"GET /v1/economy answered an unexpected shape ({type(exc).__name__}: {exc})"
        ) from exc
    return Economy(totals=totals, by_rule=by_rule, budgets=budgets)


def _uplift(u: Any) -> Uplift | None:
    if u is None:
        return None
    return Uplift(
        treatment_entries=int(u["treatment_entries"]),
        holdout_entries=int(u["holdout_entries"]),
        treatment_rate=u["treatment_rate"],
        holdout_rate=u["holdout_rate"],
        difference=u["difference"],
        low=u["interval_low"],
        high=u["interval_high"],
        confidence=float(u["confidence"]),
        significant=bool(u["significant"]),
    )


async def _campaigns(notifier: ServiceClient) -> list[Campaign]:
    infos = await notifier.read("/v1/campaigns", lambda b: [dict(c) for c in b])

    async def one(info: dict[str, Any]) -> Campaign:
        def parse(r: Any) -> Campaign:
            return Campaign(
                name=str(info["name"]),
                enabled=bool(info["enabled"]),
                channel=str(info["channel"]),
                holdout=float(info["holdout"]),
                totals={str(k): int(v) for k, v in r["totals"].items()},
                uplift=_uplift(r["uplift"]),
                variant_uplift={
                    str(v): u for v, body in r["variant_uplift"].items() if (u := _uplift(body)) is not None
                },
            )

        return await notifier.read(f"/v1/campaigns/{quote(str(info['name']), safe='')}/report", parse)

    return list(await asyncio.gather(*(one(i) for i in infos)))


class _Sections:
    """Runs each section, turning a failing service into `Missing`; without `allow_missing` the
    first failure in report order is raised once every section has finished."""

    def __init__(self, allow_missing: bool) -> None:
        self.allow_missing = allow_missing
        self.errors: list[tuple[int, ServiceError]] = []

    async def run(self, order: int, work: Awaitable[T]) -> T | Missing:
        try:
            return await work
        except ServiceError as exc:
            if not self.allow_missing:
                self.errors.append((order, exc))
            return Missing(exc.service, exc.url, exc.reason)

    def raise_first(self) -> None:
        if self.errors:
            raise min(self.errors, key=lambda e: e[0])[1]


async def fetch_report(
    endpoints: Endpoints,
    *,
    now: datetime,
    allow_missing: bool = False,
    weeks: int = 12,
    days: int = 28,
    timeout: float = 10.0,
) -> ReportData:
    """Read every section of a report (`weeks` of weekly series, `days` of daily ones). Raises
    the first `ServiceError` in report order unless `allow_missing`, in which case the sections
    of a failing service are `Missing`."""
    headers = {"Authorization": f"Bearer {endpoints.token}"}
    limits = httpx.Limits(max_connections=8)
    sections = _Sections(allow_missing)
    today = now.date()
    async with httpx.AsyncClient(headers=headers, timeout=timeout, limits=limits) as http:
        seg = ServiceClient("segmenter", endpoints.segmenter, http)
        rewards = ServiceClient("rewards", endpoints.rewards, http)
        notifier = ServiceClient("notifier", endpoints.notifier, http)
        async with asyncio.TaskGroup() as group:
            flows = group.create_task(sections.run(0, _stages_and_funnel(seg, now, weeks, days)))
            retention = group.create_task(
                sections.run(1, seg.read("/v1/analytics/retention", _cohorts, interval="week", periods=weeks))
            )
            active = group.create_task(sections.run(2, _active_days(seg, today, days)))
            core = group.create_task(sections.run(3, _core(seg, today)))
            nps = group.create_task(sections.run(4, seg.read("/v1/analytics/nps", _nps, weeks=weeks)))
            economy = group.create_task(sections.run(5, _economy(rewards)))
            campaigns = group.create_task(sections.run(6, _campaigns(notifier)))
    sections.raise_first()
    both = flows.result()
    stages, funnel = (both, both) if isinstance(both, Missing) else both
    return ReportData(
        generated_at=now,
        sources={"segmenter": seg.base_url, "rewards": rewards.base_url, "notifier": notifier.base_url},
        stages=stages,
        retention=retention.result(),
        funnel=funnel,
        active=active.result(),
        core=core.result(),
        nps=nps.result(),
        economy=economy.result(),
        campaigns=campaigns.result(),
    )
