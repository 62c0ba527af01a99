"""A pure, seeded model of a product's traffic: (spec, win-back assignment) → wire events.

Users are acquired through channels over the simulated weeks (more each week: the product
grows), some activate (three lessons in their first days, or a first order), then come back on
a share of days that decays week by week at their persona's rate until they quit; some return
after 30-70 days away (a reactivation). Sessions happen at local daytime in each user's own
timezone, so check-ins fall on their local dates. Orders carry `revenue` and an `order_id` (a
few are refunded), referred sign-ups name an earlier user as `referrer_id`, activated users
answer NPS about 30 days in (scores and comments by persona, in many languages), and some send
feedback. Users in the at-risk win-back's treatment group (`winback_treated`, the notifier's own
stable assignment) sometimes come back a week into a lull, the effect the campaign is for.

Deterministic: the same `SimSpec` and assignment give the same events, byte for byte. Nothing
here reads a clock, the network or the environment.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from scripts.sim import personas as p
from shared.events import format_ts

DAY: Final = timedelta(days=1)
WEEKLY_GROWTH: Final = 1.08
"""Sign-ups per week grow by this factor (later weeks bring more users)."""
WINBACK_RESPONSE: Final = 0.35
"""The chance that a treated, activated user in a lull of 7+ days comes back within the week."""
REFUND_RATE: Final = 0.05


@dataclass(frozen=True, slots=True)
class SimSpec:
    """What to simulate: `users` sign-ups over `weeks` weeks from `start` (UTC)."""

    seed: int
    users: int
    weeks: int
    start: datetime

    def __post_init__(self) -> None:
        if self.users < 1:
            raise ValueError("users must be at least 1")
        if self.weeks < 1:
            raise ValueError("weeks must be at least 1")
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")

    @property
    def end(self) -> datetime:
        return self.start + timedelta(weeks=self.weeks)

    @property
    def tag(self) -> str:
        """A short id of this run, part of every user id and messageId: another start or seed
        never collides with this run's users or with ingest's dedupe of its events."""
        raw = f"{self.seed}|{self.users}|{self.weeks}|{format_ts(self.start)}"
        return hashlib.sha256(raw.encode()).hexdigest()[:6]


@dataclass(frozen=True, slots=True)
class SimUser:
    user_id: str
    persona: str
    channel: str
    timezone: str
    signup_at: datetime
    referrer_id: str | None


@dataclass(frozen=True, slots=True)
class Redemption:
    """A user who would spend `points` in the rewards store at the end (`key`: Idempotency-Key)."""

    user_id: str
    points: int
    key: str


@dataclass(slots=True)
class Simulation:
    users: list[SimUser]
    events: list[dict[str, Any]]
    """Segment wire events (type, messageId, timestamp, userId, ...), ordered by timestamp."""
    redemptions: list[Redemption] = field(default_factory=list)


def _weighted(rng: random.Random, items: Sequence[tuple[Any, float]]) -> Any:
    return rng.choices([i for i, _ in items], weights=[w for _, w in items])[0]


def acquire(spec: SimSpec) -> list[SimUser]:
    """Every user's persona, channel, timezone, sign-up instant and referrer, by sign-up time.
    A referred user's referrer signed up before them (never themselves)."""
    rng = random.Random(f"acquire|{spec.seed}")
    week_weights = [WEEKLY_GROWTH**w for w in range(spec.weeks)]
    drafts = []
    for _ in range(spec.users):
        week = rng.choices(range(spec.weeks), weights=week_weights)[0]
        at = spec.start + timedelta(weeks=week, seconds=rng.uniform(0, 7 * 86400 - 3600))
        channel = _weighted(rng, [(c, c.share) for c in p.CHANNELS])
        boost = dict(channel.persona_boost)
        persona = _weighted(rng, [(x, x.share * boost.get(x.name, 1.0)) for x in p.PERSONAS])
        drafts.append((at, channel.name, persona.name, _weighted(rng, p.TIMEZONES)))
    drafts.sort(key=lambda d: d[0])
    users: list[SimUser] = []
    referrers: list[str] = []
    for i, (at, channel, persona, tz) in enumerate(drafts):
        user_id = f"u{i:05d}-{spec.tag}"
        referrer = rng.choice(referrers) if channel == "referral" and referrers else None
        users.append(SimUser(user_id, persona, channel, tz, at, referrer))
        if rng.random() < _persona(persona).refer * 4:  # only some users ever share a link
            referrers.append(user_id)
    return users


def _persona(name: str) -> p.Persona:
    return next(x for x in p.PERSONAS if x.name == name)


def simulate(spec: SimSpec, winback_treated: Callable[[str], bool] = lambda _: False) -> Simulation:
    """The whole stream for `spec`; `winback_treated(user_id)`: in the win-back's treatment."""
    users = acquire(spec)
    per_user: list[list[tuple[datetime, int, dict[str, Any]]]] = []
    redemptions = []
    for index, user in enumerate(users):
        life = _Life(spec, index, user, winback_treated(user.user_id))
        life.run()
        per_user.append(life.events)
        if life.redemption is not None:
            redemptions.append(life.redemption)
    merged = sorted((e for evs in per_user for e in evs), key=lambda e: (e[0], e[1], e[2]["messageId"]))
    return Simulation(users, [e for _, _, e in merged], redemptions)


class _Life:
    """One user's life in the product, drawn from their own random stream."""

    def __init__(self, spec: SimSpec, index: int, user: SimUser, treated: bool) -> None:
        self.spec, self.index, self.user, self.treated = spec, index, user, treated
        self.persona = _persona(user.persona)
        self.rng = random.Random(f"life|{spec.seed}|{index}")
        self.zone = ZoneInfo(user.timezone)
        self.events: list[tuple[datetime, int, dict[str, Any]]] = []
        self.redemption: Redemption | None = None
        self._n = 0

    def emit(self, at: datetime, body: dict[str, Any]) -> None:
        if at >= self.spec.end:
            return
        self._n += 1
        body = {
            "messageId": f"{self.spec.tag}-{self.index:05d}-{self._n:05d}",
            "timestamp": format_ts(at),
            "userId": self.user.user_id,
            **body,
        }
        body.setdefault("context", {})["timezone"] = self.user.timezone
        self.events.append((at, self.index, body))

    def track(self, at: datetime, event: str, properties: dict[str, Any] | None = None) -> None:
        self.emit(at, {"type": "track", "event": event, "properties": properties or {}})

    def local(self, day: date, hour: float) -> datetime:
        naive = datetime.combine(day, time()) + timedelta(hours=hour)
        return naive.replace(tzinfo=self.zone).astimezone(UTC)

    def run(self) -> None:
        rng, persona, user = self.rng, self.persona, self.user
        signup = user.signup_at
        self._sign_up(signup)
        activated = rng.random() < persona.activate
        engagement = persona.engagement if activated else persona.engagement * 0.5
        decay = persona.decay if activated else (persona.decay[0] * 0.6, persona.decay[1] * 0.7)
        t = signup + timedelta(minutes=rng.uniform(2, 20))
        if activated:
            t = self._activate(t)
        first_day = t.astimezone(self.zone).date() + DAY
        last_day = self.spec.end.astimezone(self.zone).date()
        idle_days, came_back, surveyed, lull_answered = 0, False, False, False
        day, week_start = first_day, first_day
        while day <= last_day:
            if (day - week_start).days >= 7:
                week_start = day
                engagement *= rng.uniform(*decay)
            if engagement < persona.quit_below:
                if came_back or rng.random() >= persona.reactivate:
                    break
                came_back = True
                day += timedelta(days=rng.randint(31, 70))
                week_start = day
                engagement = persona.engagement * 0.7
                self._session(day, activated, returning=True)
                continue
            active = rng.random() < engagement
            if not active and activated and self.treated and idle_days >= 7 and not lull_answered:
                lull_answered = True  # the win-back push lands: some users open the app
                active = rng.random() < WINBACK_RESPONSE
            if active:
                self._session(day, activated)
                idle_days, lull_answered = 0, False
                if activated and not surveyed and (day - first_day).days >= 29:
                    surveyed = True
                    self._nps(day)
            else:
                idle_days += 1
            day += DAY
        if activated and rng.random() < persona.redeem:
            points = rng.choice((100, 200, 300, 500))
            self.redemption = Redemption(user.user_id, points, f"{self.spec.tag}-redeem-{self.index:05d}")

    def _sign_up(self, at: datetime) -> None:
        rng, user = self.rng, self.user
        anonymous = None
        if rng.random() < 0.6:  # browsed the site before signing up
            anonymous = f"anon-{self.spec.tag}-{self.index:05d}"
            self.emit(
                at - timedelta(minutes=rng.uniform(3, 60)),
                {"type": "page", "userId": None, "anonymousId": anonymous, "name": "Pricing"},
            )
        first = rng.choice(p.FIRST_NAMES)
        traits: dict[str, Any] = {
            "first_name": first,
            "email": f"user{self.index:05d}.{self.spec.tag}@example.com",
            "plan": _weighted(rng, p.PLANS),
            "timezone": user.timezone,
            "channel": user.channel,
        }
        if traits["plan"] == "team":
            traits["company"] = rng.choice(p.COMPANIES)
        identify: dict[str, Any] = {"type": "identify", "traits": traits}
        if anonymous is not None:
            identify["anonymousId"] = anonymous
        self.emit(at, identify)
        props: dict[str, Any] = {"channel": user.channel}
        if user.referrer_id is not None:
            props["referrer_id"] = user.referrer_id
        channel = next(c for c in p.CHANNELS if c.name == user.channel)
        context: dict[str, Any] = {"campaign": {"source": channel.utm_source}} if channel.utm_source else {}
        self.emit(
            at + timedelta(seconds=1),
            {"type": "track", "event": "Signed Up", "properties": props, "context": context},
        )

    def _activate(self, t: datetime) -> datetime:
        """Reach the activation condition in the first days: a first order, or three lessons."""
        rng = self.rng
        if self.persona.name == "shopper" or rng.random() < 0.15:
            t += timedelta(hours=rng.uniform(0.1, 48))
            self._order(t)
            return t
        for _ in range(3):
            t += timedelta(hours=rng.uniform(0.05, 40))
            self.track(t, "Lesson Completed", self._lesson())
        return t

    def _lesson(self) -> dict[str, Any]:
        rng = self.rng
        return {
            "course": rng.choice(p.COURSES),
            "lesson": rng.randint(1, 40),
            "duration_s": rng.randint(120, 1500),
        }

    def _order(self, at: datetime) -> None:
        rng = self.rng
        sku, price = rng.choice(p.PRODUCTS)
        low, high = self.persona.basket
        revenue = round(max(price, rng.uniform(low, high)), 2)
        order_id = f"o-{self.spec.tag}-{self.index:05d}-{self._n:05d}"
        props = {
            "order_id": order_id,
            "revenue": revenue,
            "currency": "USD",
            "products": [{"sku": sku, "price": revenue}],
        }
        self.track(at, "Order Completed", props)
        if rng.random() < REFUND_RATE:
            self.track(
                at + timedelta(days=rng.uniform(1, 5)),
                "Order Refunded",
                {"order_id": order_id, "revenue": revenue},
            )

    def _session(self, day: date, activated: bool, *, returning: bool = False) -> None:
        rng, persona = self.rng, self.persona
        t = self.local(day, rng.uniform(7, 21.5))
        if returning:
            self.track(t - timedelta(minutes=30), "Push Notification Received", {"passive": True})
        self.emit(t, {"type": "screen", "name": "Home"})
        if rng.random() < persona.check_in:
            t += timedelta(seconds=rng.uniform(5, 60))
            self.track(t, "Checked In")
        lo, hi = persona.lessons
        for _ in range(rng.randint(lo, hi) if activated else rng.randint(0, 1)):
            t += timedelta(minutes=rng.uniform(3, 25))
            self.track(t, "Lesson Completed", self._lesson())
        if rng.random() < persona.buy:
            t += timedelta(minutes=rng.uniform(1, 10))
            self._order(t)
        if rng.random() < 0.02:
            topic, text = rng.choice(p.FEEDBACK)
            self.track(t + timedelta(minutes=1), "Feedback Submitted", {"topic": topic, "text": text})

    def _nps(self, day: date) -> None:
        rng = self.rng
        if rng.random() >= self.persona.answer_nps:
            return
        score = rng.randint(*self.persona.nps)
        category = "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"
        props: dict[str, Any] = {"score": score}
        if rng.random() < 0.7:
            props["comment"] = rng.choice(p.COMMENTS[category])
        self.track(self.local(day, rng.uniform(8, 21)), "NPS Submitted", props)
