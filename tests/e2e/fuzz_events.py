"""Seeded generation of odd but acceptable Segment calls for the end-to-end fuzz (test_fuzz.py).

`generate(seed, events)` returns request bodies for `/v1/batch` (or a single call) that ingest
should accept, plus a few calls that break the contract's limits (which it must refuse with
400). The odd parts: long (up to the 256-byte limit) and unicode ids, numeric ids, ids with
separators and quotes, extreme and odd numbers (1e308, 5e-324, -0.0, 2**63, numbers as strings),
properties nested up to the depth limit, timestamps far in the past, in the future, naive, with
offsets and with client clock skew, and anonymous ids linked to their users before, between
and after their anonymous events, in the same or other batches.

Every anonymous id belongs to exactly one user (links never conflict), so the outcome does not
depend on which partition the live service reads first; that is what makes an independent
replay a fair expectation.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.events import MAX_DEPTH, MAX_ID_BYTES, MAX_NAME_BYTES

_UNICODE = [
    "é",
    "ß",
    "ø",
    "中文",
    "日本語",
    "한국어",
    "עברית",
    "العربية",
    "🙂",
    "👩‍💻",
    "e\u0301",
    "\u200d",
    "ﷺ",
]
_ODD_NUMBERS: list[Any] = [
    0,
    -0.0,
    1,
    42.5,
    1e308,
    -1e308,
    1.7976931348623157e308,
    5e-324,
    1e-300,
    2**53 + 1,
    2**63 - 1,
    -(2**63),
    18446744073709551615,
    0.1,
    99.99,
    "NaN",
    "Infinity",
    "-Infinity",
    "1e309",
    "12.50",
    "",
    True,
    None,
    [],
    {},
    "1,000",
    " 7 ",
]


@dataclass
class Call:
    """One request: `path` (`/v1/batch`, `/v1/track`, ...) and its JSON body."""

    path: str
    body: dict[str, Any]
    expect_refused: bool = False

    @property
    def events(self) -> int:
        return len(self.body["batch"]) if self.path == "/v1/batch" else 1


@dataclass
class _Users:
    rng: random.Random
    users: list[Any] = field(default_factory=list)
    gone: dict[Any, int] = field(default_factory=dict)  # user -> days since they were last seen
    anonymous: dict[str, Any] = field(default_factory=dict)  # anonymous id -> its user

    def odd_id(self, prefix: str, n: int) -> Any:
        kind = self.rng.randrange(10)
        base = f"{prefix}{n}"
        if kind == 0:
            return 10_000 * n + self.rng.randrange(1000) if prefix == "u" else base  # a number
        if kind == 1:  # right at the byte limit, multi-byte characters included
            text = base + "-" + "".join(self.rng.choice(_UNICODE) for _ in range(100))
            raw = text.encode()[:MAX_ID_BYTES]
            return raw.decode("utf-8", "ignore")
        if kind == 2:
            return base + "".join(self.rng.choice(_UNICODE) for _ in range(3))
        if kind == 3:
            return base + self.rng.choice(
                ["'; DROP TABLE profiles; --", '"q"', "a\\b", "%s%n", " ", "\t", "\x1f", "|"]
            )
        return base


def _timestamp(rng: random.Random, now: datetime) -> dict[str, Any]:
    """Timestamp fields of one event (none, or odd ones), with or without `sentAt`."""
    kind = rng.randrange(12)
    if kind < 4:
        return {}  # the server's clock
    if kind < 7:  # the recent past, with a random UTC offset
        ts = now - timedelta(seconds=rng.randrange(200 * 86400))
        offset = rng.choice(["Z", "+00:00", "+14:00", "-12:00", "+05:30"])
        shifted = ts.astimezone(datetime.strptime(offset.replace("Z", "+00:00"), "%z").tzinfo)
        return {
            "timestamp": shifted.isoformat().replace("+00:00", "Z") if offset == "Z" else shifted.isoformat()
        }
    if kind == 7:
        return {
            "timestamp": rng.choice(
                ["1970-01-01T00:00:00Z", "2000-02-29T23:59:59.999Z", "1970-01-01T00:00:00.001Z"]
            )
        }
    if kind == 8:  # naive: taken as UTC
        return {"timestamp": (now - timedelta(days=rng.randrange(60))).replace(tzinfo=None).isoformat()}
    if kind == 9:  # a client clock hours ahead, corrected by sentAt
        skew = timedelta(hours=rng.randrange(1, 48))
        happened = now - timedelta(minutes=rng.randrange(600)) + skew
        return {"timestamp": happened.isoformat(), "sentAt": (now + skew).isoformat()}
    if kind == 10:  # far in the future and no sentAt: the consumer takes it as its own now
        return {"timestamp": rng.choice(["2099-01-01T00:00:00Z", "2999-12-31T23:59:59Z"])}
    return {
        "originalTimestamp": (now - timedelta(days=rng.randrange(30))).isoformat(),
        "timestamp": now.isoformat(),
    }


def _nested(rng: random.Random, depth: int) -> Any:
    value: Any = rng.choice(_ODD_NUMBERS)
    for _ in range(depth - 1):
        value = {"k": value} if rng.random() < 0.7 else [value]
    return value


def _properties(rng: random.Random) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if rng.random() < 0.3:
        props["deep"] = _nested(rng, MAX_DEPTH - 1)  # with `properties` itself: at the limit
    if rng.random() < 0.3:
        props[rng.choice(_UNICODE) + " key"] = rng.choice(_UNICODE) * rng.randrange(1, 20)
    if rng.random() < 0.3:
        props["odd"] = rng.choice(_ODD_NUMBERS)
    return props


def _event_name(rng: random.Random) -> str:
    kind = rng.randrange(10)
    if kind < 3:
        return "Order Completed"
    if kind < 5:
        return "Lesson Completed"
    if kind == 5:
        return "Signed Up"
    if kind == 6:  # at the byte limit
        return (
            ("Événement " + "".join(rng.choice(_UNICODE) for _ in range(80)))
            .encode()[:MAX_NAME_BYTES]
            .decode("utf-8", "ignore")
        )
    return rng.choice(["Viewed", "Clicked", "App Opened", "Lesson Started", "Settings Changed"])


def _event(rng: random.Random, users: _Users, now: datetime) -> dict[str, Any]:
    """One event of a random type, for a user or for one of the anonymous ids."""
    anonymous = rng.random() < 0.3 and users.anonymous
    who: dict[str, Any]
    if anonymous:
        anon = rng.choice(list(users.anonymous))
        who = {"anonymousId": anon}
        if rng.random() < 0.2:  # the event that links it: userId + anonymousId
            who["userId"] = users.anonymous[anon]
    else:
        who = {"userId": rng.choice(users.users)}
    etype = rng.choice(["track"] * 5 + ["identify", "page", "screen", "group"])
    if anonymous and rng.random() < 0.1:
        etype = "alias"
    owner = who.get("userId", users.anonymous.get(who.get("anonymousId", "")))
    when = _timestamp(rng, now)
    if owner in users.gone:  # every event of theirs long ago: they are at risk, dormant, churned
        days = users.gone[owner] + users.rng.random() * 60
        when = {"timestamp": (now - timedelta(days=days)).isoformat()}
    ev: dict[str, Any] = {"type": etype, **who, **when}
    if etype == "track":
        ev["event"] = _event_name(rng)
        props = _properties(rng)
        if ev["event"] == "Order Completed":
            props["revenue"] = rng.choice(_ODD_NUMBERS)
        ev["properties"] = props
    elif etype == "identify":
        ev["traits"] = {"plan": rng.choice(["free", "pro", None, 3, "✓"]), "nested": _nested(rng, 5)}
        if rng.random() < 0.3:
            ev["traits"]["timezone"] = rng.choice(["Europe/Paris", "Mars/Olympus", "UTC", "", "Asia/Kolkata"])
    elif etype in ("page", "screen"):
        ev["name"] = rng.choice(["Home", "Pricing", "", "页面", "x" * 200])
        ev["properties"] = _properties(rng)
    elif etype == "group":
        ev["groupId"] = rng.choice([7, 7.5, "g-1", "組"])
    elif etype == "alias":
        anon = who["anonymousId"]
        ev = {"type": "alias", "userId": users.anonymous[anon], "previousId": anon, **when}
    if rng.random() < 0.05:  # backends reuse messageIds across users (and SDKs resend them)
        ev["messageId"] = rng.choice(["signup-1", "order-1", "m\x1f1", "重复"])
    return ev


def _refused(rng: random.Random) -> list[Call]:
    """Calls that break a limit: ingest must answer 400 (never 200)."""
    return [
        Call("/v1/identify", {"userId": "u" * 3000}, expect_refused=True),
        Call("/v1/identify", {"userId": "é" * 129}, expect_refused=True),
        Call("/v1/track", {"userId": "u", "event": "E\x00"}, expect_refused=True),
        Call("/v1/alias", {"userId": "u", "previousId": "a\x00b"}, expect_refused=True),
        Call("/v1/track", {"userId": "u", "event": "e" * 201}, expect_refused=True),
        Call(
            "/v1/identify",
            {"userId": "u", "traits": {"deep": _nested(rng, MAX_DEPTH + 1)}},
            expect_refused=True,
        ),
        Call("/v1/track", {"userId": "u", "event": "E", "properties": {"bio": "a\x00"}}, expect_refused=True),
        Call(
            "/v1/track",
            {"userId": "u", "event": "E", "timestamp": "0001-01-02T00:00:00Z"},
            expect_refused=True,
        ),
        Call(
            "/v1/track",
            {"userId": "u", "event": "E", "timestamp": "9999-12-31T23:59:59Z"},
            expect_refused=True,
        ),
    ]


def generate(seed: int, events: int, now: datetime | None = None) -> list[Call]:
    """About `events` events in calls, in a seeded random order (the same seed, the same calls)."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    users = _Users(rng)
    users.users = [users.odd_id("u", i) for i in range(max(10, events // 20))]
    users.gone = {u: rng.choice([8, 31, 91, 400]) for u in rng.sample(users.users, len(users.users) // 4)}
    for i in range(max(5, events // 40)):
        anon = users.odd_id("anon-", i)
        if isinstance(anon, str) and anon not in users.anonymous and anon not in users.users:
            users.anonymous[anon] = rng.choice(users.users)
    calls: list[Call] = []
    made = 0
    while made < events:
        if rng.random() < 0.15:
            ev = _event(rng, users, now)
            kind = ev.pop("type")
            calls.append(Call(f"/v1/{kind}", ev))
            made += 1
            continue
        size = min(events - made, rng.randrange(1, 120))
        body: dict[str, Any] = {"batch": [_event(rng, users, now) for _ in range(size)]}
        if rng.random() < 0.2:
            body["context"] = {"library": {"name": "fuzz", "version": "1"}, "locale": rng.choice(_UNICODE)}
        calls.append(Call("/v1/batch", body))
        made += size
    # Two users whose ids and messageIds line up across the input id's separator (U+001F).
    for user, message_id in (("fz\x1fa", "b"), ("fz", "a\x1fb")):
        order = {"event": "Order Completed", "properties": {"revenue": 10}, "messageId": message_id}
        calls.insert(rng.randrange(len(calls) + 1), Call("/v1/track", {"userId": user, **order}))
    refused = _refused(rng)
    for call in refused:
        calls.insert(rng.randrange(len(calls) + 1), call)
    return calls


def poison_records(now: datetime) -> list[bytes]:
    """Records that break the contract, as an older ingest or a hand-made producer could have
    written them straight into the topic: the consumer must dead-letter each and go on."""
    stamp = now.isoformat()
    base = {"type": "track", "event": "E", "timestamp": stamp, "receivedAt": stamp}
    bad: list[dict[str, Any]] = [
        {"userId": "u" * 3000},
        {"userId": "u\x00"},
        {"userId": "u", "event": "e" * 300},
        {"userId": "u", "properties": {"deep": _nested(random.Random(0), MAX_DEPTH + 5)}},
        {"userId": "u", "traits": {"bio": "a\x00b"}},
        {"userId": "u", "messageId": "m" * 101},
        {"userId": "u", "type": "visit"},
        {"anonymousId": {"id": 1}},
    ]
    records = [json.dumps(base | {"messageId": f"poison-{i}"} | b).encode() for i, b in enumerate(bad)]
    records.append(b'{"type": "track", "userId": "u", "properties": {"revenue": NaN}}')
    records.append(b"not json")
    return records
