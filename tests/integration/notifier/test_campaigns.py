"""Campaign behaviour through the real service: the delayed nudge's re-check, quiet hours in the
user's timezone, holdouts counted for the goal but sent nothing, the NPS detractor follow-up once,
and one-click unsubscribe (concurrent, idempotent, honoured)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx

from scripts.stack.sinks import Sinks
from services.notifier.domain.assignment import HOLDOUT, assign
from services.notifier.domain.sends import send_key
from services.notifier.domain.unsubscribe import UnsubscribeSigner, scope_for
from shared import topics as t
from shared.ids import input_id
from tests.conftest import Stack, eventually, plain_url
from tests.integration.notifier.conftest import NotifierFactory, write_config
from tests.integration.notifier.harness import (
    UNSUBSCRIBE_SECRET,
    NotifierProcess,
    identify,
    produce,
    stage_changed,
    track,
)


def key(topic: str, user: str, mid: str, campaign: str) -> str:
    return send_key(input_id(topic, user, mid), campaign, "webhook")


async def messages(notifier: NotifierProcess, user: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await notifier.get(f"/v1/users/{user}/messages")
    return rows


async def test_campaign_rules_hold_in_the_running_service(
    stack: Stack,
    topics: dict[str, str],
    sinks: Sinks,
    notifier_factory: NotifierFactory,
    tmp_path: Path,
    database: str,
) -> None:
    now = datetime.now(UTC)
    # Quiet hours (only the `late` campaign obeys them) span the current UTC wall time.
    quiet_start, quiet_end = (
        (now - timedelta(hours=1)).strftime("%H:%M"),
        (now + timedelta(hours=2)).strftime("%H:%M"),
    )
    notifier = notifier_factory(write_config(tmp_path / "n.yaml", sinks.url, quiet=(quiet_start, quiet_end)))
    notifier.start()
    await notifier.wait_ready()
    run = uuid.uuid4().hex[:6]
    ev, lc = topics[t.EVENTS], topics[t.LIFECYCLE]
    counts = sinks.webhooks.counts

    # 1. Delayed nudge (3 s): only the user still not activated at send time gets it.
    idle, active = f"idle-{run}", f"act-{run}"
    started = datetime.now(UTC)
    await produce(stack.bootstrap, ev, [track(u, "Trial Started", mid="trial") for u in (idle, active)])
    await produce(
        stack.bootstrap, lc, [stage_changed(active, "activated", rid="act-1", frm="new", activated=True)]
    )
    # 2. Quiet hours: a UTC user is deferred; a user whose local time is outside the window is not.
    night, day = f"night-{run}", f"day-{run}"
    await produce(
        stack.bootstrap,
        ev,
        [
            identify(night, mid="tz", traits={}, context={"timezone": "UTC"}),
            identify(day, mid="tz", traits={}, context={"timezone": "Asia/Kathmandu"}),
        ],
    )
    await produce(stack.bootstrap, ev, [track(u, "Ping", mid="ping") for u in (night, day)])
    # 3. Holdout: 20 users slip to at_risk, then all come back (the goal).
    crowd = [f"crowd{i}-{run}" for i in range(20)]
    await produce(stack.bootstrap, lc, [stage_changed(u, "at_risk", rid="risk", frm="active") for u in crowd])
    # 4. NPS: a detractor (answer redelivered, then a second answer), a promoter.
    sad, happy = f"sad-{run}", f"happy-{run}"
    answer = track(sad, "NPS Submitted", mid="nps-1", properties={"score": 3, "comment": "too slow"})
    await produce(stack.bootstrap, ev, [answer, answer])
    await produce(
        stack.bootstrap,
        ev,
        [
            track(sad, "NPS Submitted", mid="nps-2", properties={"score": 2}),
            track(happy, "NPS Submitted", mid="nps-1", properties={"score": 10}),
        ],
    )

    nudge_idle = key(t.EVENTS, idle, "trial", "nudge")
    await eventually(lambda: nudge_idle in counts, timeout=20)
    arrived = next(
        datetime.fromisoformat(r["received_at"])
        for r in sinks.webhooks.received
        if r["webhook_id"] == nudge_idle
    )
    assert arrived - started >= timedelta(seconds=3)
    cancelled = await eventually(lambda: _find(notifier, active, "nudge", "cancelled"), timeout=20)
    assert cancelled["reason"] == "conditions_no_longer_hold"
    assert key(t.EVENTS, active, "trial", "nudge") not in counts

    assert key(t.EVENTS, day, "ping", "late") in counts
    deferred = await eventually(lambda: _find(notifier, night, "late", "deferred"), timeout=10)
    end_h, end_m = map(int, quiet_end.split(":"))
    expected = now.replace(hour=end_h, minute=end_m, second=0, microsecond=0)
    if expected < now:
        expected += timedelta(days=1)
    conn = await asyncpg.connect(plain_url(database))
    try:
        due = await conn.fetchval(
            "SELECT due_at FROM timers WHERE kind = 'notifier.send' AND key = $1", deferred["send_key"]
        )
    finally:
        await conn.close()
    assert due == expected, (due, expected)
    assert key(t.EVENTS, night, "ping", "late") not in counts

    groups = {u: assign("winback", u, 0.5, [("a", 0.5), ("b", 0.5)]) for u in crowd}
    held = {u for u, g in groups.items() if g == HOLDOUT}
    assert 0 < len(held) < len(crowd)
    treated_keys = {key(t.LIFECYCLE, u, "risk", "winback") for u in crowd if u not in held}
    await eventually(lambda: treated_keys <= counts.keys(), timeout=20)
    await produce(stack.bootstrap, lc, [stage_changed(u, "active", rid="back", frm="at_risk") for u in crowd])
    report = await eventually(lambda: _report(notifier, "winback", len(crowd)), timeout=20)
    assert report["goals"][HOLDOUT]["entries"] == len(held) == report["goals"][HOLDOUT]["converted"]
    assert report["outcomes"][HOLDOUT]["suppressed"] == len(held)
    assert report["totals"]["sent"] == len(crowd) - len(held)
    assert report["uplift"]["holdout_rate"] == 1.0 and report["uplift"]["difference"] == 0.0
    assert not any(key(t.LIFECYCLE, u, "risk", "winback") in counts for u in held)

    followup = key(t.EVENTS, sad, "nps-1", "detractor")
    await eventually(lambda: followup in counts, timeout=20)
    body = next(r["body"] for r in sinks.webhooks.received if r["webhook_id"] == followup)
    assert body["data"] == {"user_id": sad, "score": "3", "comment": "too slow"}
    assert counts[followup] == 1
    # Caught up with everything after the answers (the promoter's answer is behind them).
    await eventually(lambda: _find(notifier, happy, None, None, exists=False), timeout=5)
    assert [r for r in sinks.webhooks.received if r["path"] == "/hooks/support"] == [
        r for r in sinks.webhooks.received if r["webhook_id"] == followup
    ]

    # 5. Unsubscribe: 10 concurrent one-click POSTs are one change; then nothing on that topic.
    fan = f"fan-{run}"
    await produce(stack.bootstrap, ev, [track(fan, "Promo", mid="p0")])
    await eventually(lambda: key(t.EVENTS, fan, "p0", "promo") in counts, timeout=20)
    signer = UnsubscribeSigner(UNSUBSCRIBE_SECRET.encode(), "http://127.0.0.1/v1/unsubscribe")
    token = signer.token(fan, scope_for(topic="promo"), datetime.now(UTC))
    async with httpx.AsyncClient(base_url=notifier.url) as c:
        posts = await asyncio.gather(
            *(
                c.post("/v1/unsubscribe", params={"token": token}, content=b"List-Unsubscribe=One-Click")
                for _ in range(10)
            )
        )
        assert {p.status_code for p in posts} == {200}
        status = (await c.get("/v1/unsubscribe", params={"token": token})).json()
        assert status == {"scope": "topic:promo", "subscribed": False}
        assert (await c.post("/v1/unsubscribe", params={"token": token + "x"})).status_code == 401
        stranger = signer.token(f"nobody-{run}", "all", datetime.now(UTC))
        assert (await c.post("/v1/unsubscribe", params={"token": stranger})).status_code == 404
    conn = await asyncpg.connect(plain_url(database))
    try:
        assert await conn.fetchval("SELECT count(*) FROM preference_changes WHERE user_id = $1", fan) == 1
    finally:
        await conn.close()
    await asyncio.sleep(1.1)  # past the campaign's 1 s re-entry: the next Promo would enter
    await produce(stack.bootstrap, ev, [track(fan, "Promo", mid="p1")])
    suppressed = await eventually(lambda: _count(notifier, fan, "promo", "suppressed", 1), timeout=20)
    assert suppressed[0]["reason"] == "unsubscribed"
    assert key(t.EVENTS, fan, "p1", "promo") not in counts


async def _find(
    notifier: NotifierProcess, user: str, campaign: str | None, state: str | None, exists: bool = True
) -> dict[str, Any] | bool | None:
    try:
        rows = await messages(notifier, user)
    except httpx.HTTPStatusError:
        return None
    for m in rows:
        if m["campaign"] == campaign and m["state"] == state:
            return m
    return None if exists else True


async def _count(
    notifier: NotifierProcess, user: str, campaign: str, state: str, n: int
) -> list[dict[str, Any]] | None:
    rows = [m for m in await messages(notifier, user) if m["campaign"] == campaign and m["state"] == state]
    return rows if len(rows) >= n else None


async def _report(notifier: NotifierProcess, campaign: str, entries: int) -> dict[str, Any] | None:
    r: dict[str, Any] = await notifier.get(f"/v1/campaigns/{campaign}/report")
    goals = r["goals"]
    converted = sum(g["converted"] for g in goals.values())
    return r if converted == entries else None
