"""`UserState`: everything the segmenter knows about one user, and its JSON form (stored as bytes).

The state holds *facts* (what happened, when) from which the lifecycle stage is derived at any
`now`, plus the last *decisions* (stage, segments, RFM scores) so changes can be announced once.
Every structure is bounded: activity days by `activity.keep_days`, per-event daily counts by the
longest window that counts the event, orders by the RFM window, activity runs by `MAX_RUNS`.

Days are UTC "epoch days" (`date.toordinal() - EPOCH_ORDINAL`), the keys of every daily counter.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import orjson

JSON_VERSION: Final = 1
EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_day(ts: datetime) -> int:
    """The UTC day of `ts` as days since 1970-01-01 (`ts` must be UTC-aware)."""
    return ts.toordinal() - EPOCH_ORDINAL


def day_date(day: int) -> date:
    return date.fromordinal(day + EPOCH_ORDINAL)


def day_start(day: int) -> datetime:
    """Midnight UTC at the start of an epoch day."""
    return EPOCH + timedelta(days=day)


@dataclass(slots=True)
class UserState:
    """One user's facts and current decisions. Mutable: the decide functions update it in place.

    Facts: `first_seen`/`last_seen` (any event), `signup_event_at` (earliest signup event),
    `last_activity_at`, `runs` (activity runs: sorted `[start, end]` pairs split by gaps ≥ the
    reactivation gap; `pruned_run_end` is the end of the latest run dropped to keep `MAX_RUNS`),
    `activation_times` (per activation event, its earliest timestamps, as many as any rule
    counts), `traits` with per-trait `trait_at` (latest wins), `timezone`, `activity_days`
    (sorted epoch days), `event_days` (event → epoch day → count), `last_done` (event → time),
    `revenue`/`orders` (lifetime), `order_days` (epoch day → [orders, revenue]).
    Derived from facts (kept for queries): `signup_at`, `activated_at`.
    Decisions: `stage` (+ `stage_since`, `stage_reason`), `as_of` (the instant
    up to which time-driven changes have been applied), `segments`, `rfm` ([r, f, m]),
    `rfm_segment`.
    """

    user_id: str
    first_seen: datetime
    last_seen: datetime
    aliases: list[str] = field(default_factory=list)
    signup_event_at: datetime | None = None
    last_activity_at: datetime | None = None
    runs: list[list[datetime]] = field(default_factory=list)
    pruned_run_end: datetime | None = None
    activation_times: dict[str, list[datetime]] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    trait_at: dict[str, datetime] = field(default_factory=dict)
    timezone: str | None = None
    timezone_at: datetime | None = None
    activity_days: list[int] = field(default_factory=list)
    event_days: dict[str, dict[int, int]] = field(default_factory=dict)
    last_done: dict[str, datetime] = field(default_factory=dict)
    revenue: float = 0.0
    orders: int = 0
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    order_days: dict[int, list[float]] = field(default_factory=dict)
    signup_at: datetime | None = None
    activated_at: datetime | None = None
    stage: str | None = None
    stage_since: datetime | None = None
    stage_reason: str = ""
    as_of: datetime | None = None
    segments: list[str] = field(default_factory=list)
    rfm: list[int] | None = None
    rfm_segment: str | None = None

    @classmethod
    def new(cls, user_id: str, seen_at: datetime) -> UserState:
        return cls(user_id=user_id, first_seen=seen_at, last_seen=seen_at)

    @property
    def activated(self) -> bool:
        return self.activated_at is not None

    def copy(self) -> UserState:
        """An independent deep copy."""
        return UserState(
            user_id=self.user_id,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            aliases=list(self.aliases),
            signup_event_at=self.signup_event_at,
            last_activity_at=self.last_activity_at,
            runs=[list(r) for r in self.runs],
            pruned_run_end=self.pruned_run_end,
            activation_times={k: list(v) for k, v in self.activation_times.items()},
            traits=deepcopy(self.traits),
            trait_at=dict(self.trait_at),
            timezone=self.timezone,
            timezone_at=self.timezone_at,
            activity_days=list(self.activity_days),
            event_days={k: dict(v) for k, v in self.event_days.items()},
            last_done=dict(self.last_done),
            revenue=self.revenue,
            orders=self.orders,
            first_order_at=self.first_order_at,
            last_order_at=self.last_order_at,
            order_days={k: list(v) for k, v in self.order_days.items()},
            signup_at=self.signup_at,
            activated_at=self.activated_at,
            stage=self.stage,
            stage_since=self.stage_since,
            stage_reason=self.stage_reason,
            as_of=self.as_of,
            segments=list(self.segments),
            rfm=None if self.rfm is None else list(self.rfm),
            rfm_segment=self.rfm_segment,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (datetimes stay datetimes; orjson writes them as ISO-8601)."""
        return {
            "v": JSON_VERSION,
            "userId": self.user_id,
            "aliases": list(self.aliases),
            "firstSeen": self.first_seen,
            "lastSeen": self.last_seen,
            "signupEventAt": self.signup_event_at,
            "lastActivityAt": self.last_activity_at,
            "runs": [list(r) for r in self.runs],
            "prunedRunEnd": self.pruned_run_end,
            "activationTimes": {k: list(v) for k, v in self.activation_times.items()},
            "traits": dict(self.traits),
            "traitAt": dict(self.trait_at),
            "timezone": self.timezone,
            "timezoneAt": self.timezone_at,
            "activityDays": list(self.activity_days),
            "eventDays": {k: dict(v) for k, v in self.event_days.items()},
            "lastDone": dict(self.last_done),
            "revenue": self.revenue,
            "orders": self.orders,
            "firstOrderAt": self.first_order_at,
            "lastOrderAt": self.last_order_at,
            "orderDays": {k: list(v) for k, v in self.order_days.items()},
            "signupAt": self.signup_at,
            "activatedAt": self.activated_at,
            "stage": self.stage,
            "stageSince": self.stage_since,
            "stageReason": self.stage_reason,
            "asOf": self.as_of,
            "segments": list(self.segments),
            "rfm": list(self.rfm) if self.rfm is not None else None,
            "rfmSegment": self.rfm_segment,
        }

    def to_json(self) -> bytes:
        """Serialize for storage; `from_json(to_json())` gives an equal state."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_NON_STR_KEYS)

    @classmethod
    def from_json(cls, data: bytes | str) -> UserState:
        return cls.from_dict(orjson.loads(data))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UserState:
        """The state from the JSON-decoded form of `to_dict` (takes ownership of `d`'s parts).

        `from_dict(loads(dumps(s.to_dict())))` equals `s` for every state the domain produces,
        also after a trip through a jsonb column (property-tested).
        """
        if d.get("v") != JSON_VERSION:
            raise ValueError(f"unsupported user state version {d.get('v')!r}")
        iso = datetime.fromisoformat  # every stored instant carries its UTC offset
        return cls(
            user_id=d["userId"],
            aliases=d["aliases"],
            first_seen=iso(d["firstSeen"]),
            last_seen=iso(d["lastSeen"]),
            signup_event_at=_opt_ts(d["signupEventAt"]),
            last_activity_at=_opt_ts(d["lastActivityAt"]),
            runs=[[iso(s), iso(e)] for s, e in d["runs"]],
            pruned_run_end=_opt_ts(d["prunedRunEnd"]),
            activation_times={k: [iso(t) for t in v] for k, v in d["activationTimes"].items()},
            traits=d["traits"],
            trait_at={k: iso(v) for k, v in d["traitAt"].items()},
            timezone=d["timezone"],
            timezone_at=_opt_ts(d["timezoneAt"]),
            activity_days=d["activityDays"],
            event_days={k: {int(day): n for day, n in v.items()} for k, v in d["eventDays"].items()},
            last_done={k: iso(v) for k, v in d["lastDone"].items()},
            # Numbers are taken back as floats: PostgreSQL's jsonb prints a float such as 1e16
            # as an integer, which float() turns back into the very same float.
            revenue=_amount(d["revenue"]),
            orders=d["orders"],
            first_order_at=_opt_ts(d["firstOrderAt"]),
            last_order_at=_opt_ts(d["lastOrderAt"]),
            order_days={int(k): [float(n), _amount(a)] for k, (n, a) in d["orderDays"].items()},
            signup_at=_opt_ts(d["signupAt"]),
            activated_at=_opt_ts(d["activatedAt"]),
            stage=d["stage"],
            stage_since=_opt_ts(d["stageSince"]),
            stage_reason=d["stageReason"],
            as_of=_opt_ts(d["asOf"]),
            segments=d["segments"],
            rfm=d["rfm"],
            rfm_segment=d["rfmSegment"],
        )


_INT_RANGE: Final = (-(2**63), 2**64)
"""Integers orjson writes and reads as integers (beyond them, as floats)."""


def storable(value: Any) -> Any:
    """`value` (a decoded JSON value, e.g. a trait) in the form a jsonb column gives back equal.

    jsonb keeps a number's decimal digits but not whether it was a float: orjson writes 1.5e18 as
    `1.5e+18`, jsonb prints it back as `1500000000000000000`, which reads as an int. A float that
    integral and in orjson's integer range is therefore kept as that (exactly equal) int.
    """
    if isinstance(value, float):
        if abs(value) >= 1e16 and _INT_RANGE[0] <= value < _INT_RANGE[1]:
            return int(value)
        return value
    if isinstance(value, dict):
        return {k: storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


def _amount(value: float | None) -> float:
    """A stored sum. Null is what versions that let a sum overflow wrote for NaN or infinity;
    that sum is lost, and 0 lets the user's later orders count again instead of failing."""
    return 0.0 if value is None else float(value)


def _opt_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
