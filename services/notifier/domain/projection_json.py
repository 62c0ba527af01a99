"""The JSON form of a `Projection` (stored as JSONB by the adapter): `to_json` / `from_json`.

Instants are ISO-8601 UTC strings with microseconds; sets are sorted lists; `v` is the format
version, so a future change can read old rows. `from_json(to_json(p)) == p` for every projection.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from services.notifier.domain.caps import SentRecord
from services.notifier.domain.nps import NpsAnswer
from services.notifier.domain.projection import Entry, Lot, Projection

JSON_VERSION: Final = 1


def to_json(p: Projection) -> dict[str, Any]:
    """A JSON-ready dict of `p`."""
    return {
        "v": JSON_VERSION,
        "user_id": p.user_id,
        "stage": p.stage,
        "stage_since": _ts(p.stage_since),
        "activated": p.activated,
        "activated_at": _ts(p.activated_at),
        "signup_at": _ts(p.signup_at),
        "segments": sorted(p.segments),
        "tier": p.tier,
        "timezone": p.timezone,
        "email": p.email,
        "locale": p.locale,
        "traits": dict(p.traits),
        "traits_at": _ts(p.traits_at),
        "unsubscribed": sorted(p.unsubscribed),
        "preferences_at": {k: _ts(v) for k, v in sorted(p.preferences_at.items())},
        "points_balance": p.points_balance,
        "lots": [[lot.points, _ts(lot.expires_at), lot.lot_id] for lot in p.lots],
        "expiry_reminded": {k: _ts(v) for k, v in sorted(p.expiry_reminded.items())},
        "nps": None if p.nps is None else [_ts(p.nps.at), p.nps.score, p.nps.comment],
        "entries": {
            name: [_ts(e.at), e.input_id, e.group, _ts(e.goal_until), _ts(e.converted_at)]
            for name, e in sorted(p.entries.items())
        },
        "sent": [[s.campaign, _ts(s.at), s.global_caps] for s in p.sent],
    }


def from_json(data: dict[str, Any]) -> Projection:
    """The projection stored as `data`; ValueError for an unknown format version."""
    if data.get("v") != JSON_VERSION:
        raise ValueError(f"unknown projection format version {data.get('v')!r}")
    user_id = data["user_id"]
    nps = data["nps"]
    return Projection(
        user_id=user_id,
        stage=data["stage"],
        stage_since=_dt(data["stage_since"]),
        activated=data["activated"],
        activated_at=_dt(data["activated_at"]),
        signup_at=_dt(data["signup_at"]),
        segments=set(data["segments"]),
        tier=data["tier"],
        timezone=data["timezone"],
        email=data["email"],
        locale=data["locale"],
        traits=dict(data["traits"]),
        traits_at=_dt(data["traits_at"]),
        unsubscribed=set(data["unsubscribed"]),
        preferences_at={k: _req(v) for k, v in data["preferences_at"].items()},
        points_balance=data["points_balance"],
        lots=[Lot(points, _req(at), lot_id) for points, at, lot_id in data["lots"]],
        expiry_reminded={k: _req(v) for k, v in data["expiry_reminded"].items()},
        nps=None if nps is None else NpsAnswer(user_id, _req(nps[0]), nps[1], nps[2]),
        entries={
            name: Entry(_req(at), input_id, group, _dt(until), _dt(converted))
            for name, (at, input_id, group, until, converted) in data["entries"].items()
        },
        sent=[SentRecord(campaign, _req(at), counts) for campaign, at, counts in data["sent"]],
    )


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds")


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _req(value: str) -> datetime:
    return datetime.fromisoformat(value)
