"""The segmenter bench's workloads: a realistic event stream, and real user states with due timers.

Part of `bench/segmenter.py` (see there); not a test.
"""

from __future__ import annotations

import random
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.segmenter.config import SegmenterConfig
from services.segmenter.consumer import IDLE_TIMER
from services.segmenter.domain.decide import apply_event, apply_timer
from services.segmenter.domain.state import UserState
from shared.events import Event, format_ts

# --------------------------------------------------------------------------- the event stream

TRACKS = (  # (name, weight)
    ("Product Viewed", 15),
    ("Lesson Completed", 14),
    ("Search Performed", 8),
    ("Added to Cart", 6),
    ("Order Completed", 5),
    ("Application Backgrounded", 4),
)
PLANS = ("free", "free", "free", "pro", "team")
TIMEZONES = ("Europe/Paris", "America/New_York", "Asia/Shanghai", "Asia/Tokyo", "Europe/London")


@dataclass
class _User:
    """One user of the generated stream; `emit` stamps and keys an event as ingest would."""

    index: int
    anon: str | None
    identified_at: float  # before this offset the user is known by `anon` only
    tz: str
    now: datetime
    window: float
    rng: random.Random
    out: list[tuple[float, bytes, bytes]]

    @property
    def uid(self) -> str:
        return f"user-{self.index:06d}"

    def emit(self, offset: float, body: dict[str, Any]) -> None:
        rng, u = self.rng, self.index
        ts = self.now - timedelta(seconds=self.window - offset)
        if self.anon is not None and offset < self.identified_at:
            body["anonymousId"] = self.anon
        else:
            body["userId"] = self.uid
            if self.anon is not None:
                body["anonymousId"] = self.anon
        stamp = format_ts(ts)
        received = format_ts(ts + timedelta(milliseconds=rng.randint(20, 900)))
        body.update(
            messageId=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            timestamp=stamp,
            originalTimestamp=stamp,
            receivedAt=received,
            sentAt=received,
            sourceId="bench-source",
            integrations={},
        )
        body.setdefault("context", {}).update(
            library={"name": "analytics.js" if self.anon else "analytics-python", "version": "2.4.0"},
            ip=f"10.{u % 250}.{u // 250 % 250}.{u % 7}",
            locale="en-US",
            timezone=self.tz,
        )
        key = body.get("userId") or body["anonymousId"]
        self.out.append((offset, key.encode(), orjson.dumps(body)))


def make_events(users: int, total: int, now: datetime, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """`total` (key, value) pairs as ingest publishes them, in timestamp order.

    Activity is skewed (a few heavy users, many light ones). Every user signs up at their first
    event. 30% of users come from a browser/app SDK that sends an `anonymousId` beside the
    `userId`; a third of those browse anonymously first and are identified later. 1% of users
    carry a legacy id aliased to their user id.
    """
    rng = random.Random(seed)
    per_user = [0] * users
    for _ in range(total - users):
        per_user[int(users * rng.random() ** 1.6)] += 1
    tracks = [name for name, _ in TRACKS]
    weights = [w for _, w in TRACKS]
    window = 60 * 86400.0
    out: list[tuple[float, bytes, bytes]] = []
    for u in range(users):
        anon = f"anon-{uuid.UUID(int=rng.getrandbits(128))}" if u % 10 < 3 else None
        first = rng.random() * window
        n = per_user[u]
        times = sorted(first + rng.random() * (window - first) for _ in range(n))
        late = anon is not None and u % 10 == 0 and n >= 3  # browses anonymously, identified later
        plan = rng.choice(PLANS)
        user = _User(u, anon, times[n // 3] if late else first, rng.choice(TIMEZONES), now, window, rng, out)
        uid, tz, emit = user.uid, user.tz, user.emit
        emit(first, {"type": "track", "event": "Signed Up", "properties": {"method": "email"}})
        if u % 100 == 0:
            emit(first, {"type": "alias", "previousId": f"legacy-{u}"})
        for i, t in enumerate(times):
            if late and i == n // 3:
                emit(t, {"type": "identify", "traits": {"email": f"{uid}@example.com", "plan": plan}})
                continue
            r = rng.random()
            if r < 0.28:
                path = rng.choice(("/", "/pricing", "/courses", "/courses/python", "/blog"))
                emit(
                    t,
                    {
                        "type": "page",
                        "name": path.strip("/") or "home",
                        "properties": {"path": path, "url": f"https://example.com{path}", "title": "Example"},
                        "context": {"page": {"path": path, "referrer": "https://www.google.com/"}},
                    },
                )
            elif r < 0.40:
                emit(
                    t,
                    {
                        "type": "screen",
                        "name": rng.choice(("Home", "Lesson", "Profile", "Cart")),
                        "properties": {"variant": "b"},
                    },
                )
            elif r < 0.47:
                emit(
                    t,
                    {
                        "type": "identify",
                        "traits": {
                            "email": f"{uid}@example.com",
                            "plan": plan,
                            "name": f"User {u}",
                            "age": 18 + u % 50,
                            "timezone": tz,
                        },
                    },
                )
            else:
                name = rng.choices(tracks, weights)[0]
                props: dict[str, Any] = {"sku": f"sku-{rng.randint(1, 500)}", "category": "courses"}
                if name == "Order Completed":
                    props = {
                        "order_id": f"o-{u}-{i}",
                        "revenue": round(rng.uniform(5, 400), 2),
                        "currency": "EUR",
                        "products": [{"sku": props["sku"], "quantity": 1}],
                    }
                elif name == "Lesson Completed":
                    props = {
                        "course": "python",
                        "lesson": rng.randint(1, 40),
                        "duration_s": rng.randint(60, 1800),
                    }
                emit(t, {"type": "track", "event": name, "properties": props})
    out.sort(key=lambda e: e[0])
    return [(k, v) for _, k, v in out]


# --------------------------------------------------------------------------- the timer workload


def _wire(user: str, at: datetime, etype: str, event: str | None = None, **fields: Any) -> Event:
    body: dict[str, Any] = {
        "type": etype,
        "messageId": str(uuid.uuid4()),
        "userId": user,
        "timestamp": format_ts(at),
        "receivedAt": format_ts(at),
        **fields,
    }
    if event is not None:
        body["event"] = event
    return Event.from_wire(body)


@dataclass
class Template:
    name: str
    state: UserState
    due: datetime
    expect: str  # the stage the timer moves the user to


def build_templates(cfg: SegmenterConfig, now: datetime) -> list[Template]:
    """Real states, each settled 10 minutes ago with its next deadline in the last 10 minutes.

    Each timer fires one stage change: active → at_risk (a slipping learner; a pro user, who
    also enters `pro_plan_slipping`), at_risk → dormant (a lapsed buyer), dormant → churned,
    new → active (a trial that never activated) and activated → active.
    """
    settle = now - timedelta(minutes=10)
    lag = timedelta(minutes=5)  # the deadline falls 5 minutes before now
    templates = []

    def build(name: str, events: list[Event], expect: str) -> None:
        state: UserState | None = None
        for e in sorted(events, key=lambda e: e.timestamp):
            state = apply_event(state, e, cfg, e.timestamp).state
        assert state is not None
        decision = apply_timer(state, cfg, settle)
        due = decision.next_timer_at
        assert due is not None and settle < due <= now, (name, due)
        fired = apply_timer(state.copy(), cfg, due, due_at=due)
        assert fired.state.stage == expect, (name, state.stage, fired.state.stage)
        templates.append(Template(name, state, due, expect))

    def session(user: str, at: datetime, lessons: int = 1) -> list[Event]:
        evs = [_wire(user, at, "page", name="courses", properties={"path": "/courses"})]
        evs += [
            _wire(
                user, at + timedelta(minutes=5 * i + 1), "track", "Lesson Completed", properties={"lesson": i}
            )
            for i in range(lessons)
        ]
        return evs

    # active -> at_risk: 40 days of lessons, last activity 7 days (minus 5 min) before the deadline.
    last = now - lag - timedelta(days=7)
    evs = [_wire("x", last - timedelta(days=40), "track", "Signed Up")]
    for d in range(0, 40, 3):
        evs += session("x", last - timedelta(days=40 - d), lessons=2)
    evs += session("x", last - timedelta(minutes=6), lessons=1)
    evs.append(_wire("x", last, "screen", name="Home"))
    evs.append(
        _wire("x", last - timedelta(days=39), "identify", traits={"plan": "free", "email": "x@example.com"})
    )
    build("slipping learner", evs, "at_risk")
    # A pro user going at risk, who also enters pro_plan_slipping.
    evs = [e for e in evs if e.type != "identify"]
    evs.append(
        _wire("x", last - timedelta(days=39), "identify", traits={"plan": "pro", "email": "x@example.com"})
    )
    build("pro slipping", evs, "at_risk")
    # at_risk -> dormant: a buyer whose last visit was 30 days ago.
    last = now - lag - timedelta(days=30)
    evs = [_wire("x", last - timedelta(days=50), "track", "Signed Up")]
    for d in range(0, 50, 5):
        evs.append(
            _wire(
                "x",
                last - timedelta(days=50 - d),
                "track",
                "Order Completed",
                properties={"revenue": 60.0 + d, "order_id": f"o{d}"},
            )
        )
        evs.append(_wire("x", last - timedelta(days=50 - d, minutes=-3), "page", name="receipt"))
    evs.append(_wire("x", last, "page", name="home"))
    build("lapsed buyer", evs, "dormant")
    # dormant -> churned.
    last = now - lag - timedelta(days=90)
    evs = [_wire("x", last - timedelta(days=10), "track", "Signed Up")]
    evs += session("x", last - timedelta(days=5), lessons=2)
    evs.append(_wire("x", last, "page", name="home"))
    build("gone", evs, "churned")
    # new -> active: signed up 7 days ago, still around, never activated.
    signup = now - lag - timedelta(days=7)
    evs = [_wire("x", signup, "track", "Signed Up")]
    for d in range(1, 7):
        evs.append(_wire("x", signup + timedelta(days=d, hours=1), "page", name="pricing"))
    evs += session("x", now - timedelta(hours=20), lessons=1)
    build("trial ending", evs, "active")
    # activated -> active: first order 7 days ago, active since.
    signup = now - lag - timedelta(days=7, hours=2)
    evs = [
        _wire("x", signup, "track", "Signed Up"),
        _wire(
            "x",
            signup + timedelta(hours=2),
            "track",
            "Order Completed",
            properties={"revenue": 120.0, "order_id": "first"},
        ),
    ]
    for d in range(1, 7):
        evs += session("x", signup + timedelta(days=d, hours=3), lessons=1)
    build("fresh customer", evs, "active")
    return templates


async def fill_timers(conn: asyncpg.Connection, templates: list[Template], n: int) -> None:
    """`n` profiles (ids t-0000000 ...) copied from the templates, round robin, each with a due timer."""
    await conn.execute(
        "CREATE TEMP TABLE tpl (k int, state jsonb, stage text, activated bool, "
        "first_seen timestamptz, last_activity_at timestamptz, due timestamptz, "
        "segments text[], seg_since timestamptz)"
    )
    await conn.executemany(
        "INSERT INTO tpl VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, $8, $9)",
        [
            (
                k,
                t.state.to_json().decode(),
                t.state.stage,
                t.state.activated,
                t.state.first_seen,
                t.state.last_activity_at,
                t.due,
                t.state.segments,
                t.state.as_of,
            )
            for k, t in enumerate(templates)
        ],
    )
    k = len(templates)
    await conn.execute(
        """
        INSERT INTO profiles (user_id, state, stage, activated, first_seen, last_activity_at)
        SELECT 't-' || lpad(g::text, 7, '0'),
               convert_to(jsonb_set(p.state, '{userId}', to_jsonb('t-' || lpad(g::text, 7, '0')))::text, 'UTF8'),
               p.stage, p.activated, p.first_seen, p.last_activity_at
        FROM generate_series(0, $1 - 1) g JOIN tpl p ON p.k = g % $2
        """,
        n,
        k,
    )
    await conn.execute(
        "INSERT INTO stage_counts (stage, n) SELECT stage, count(*) FROM profiles GROUP BY stage"
    )
    await conn.execute(
        """
        INSERT INTO timers (kind, key, due_at)
        SELECT $3, 't-' || lpad(g::text, 7, '0'), p.due FROM generate_series(0, $1 - 1) g JOIN tpl p ON p.k = g % $2
        """,
        n,
        k,
        IDLE_TIMER,
    )
    await conn.execute(
        """
        INSERT INTO segment_members (segment, user_id, since)
        SELECT s, 't-' || lpad(g::text, 7, '0'), p.seg_since
        FROM generate_series(0, $1 - 1) g JOIN tpl p ON p.k = g % $2, unnest(p.segments) s
        """,
        n,
        k,
    )
    await conn.execute(
        "INSERT INTO activity_days (user_id, day) "
        "SELECT 't-' || lpad(g::text, 7, '0'), current_date - (g % 30) FROM generate_series(0, $1 - 1) g",
        n,
    )
