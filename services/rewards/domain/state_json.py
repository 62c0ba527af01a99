"""`UserRewardsState` to and from JSON, for storage as one JSONB value per user.

`from_json(to_json(state))` equals `state`. Instants are ISO-8601 with their UTC offset, dates
ISO dates, decimal progress exact strings. The form carries a version; an unknown one is refused.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

import orjson

from services.rewards.domain.book import PointsBook
from services.rewards.domain.ledger import Balances, Hold, Lot
from services.rewards.domain.state import (
    EarnedPoints,
    ReferralState,
    StreakState,
    TierStatus,
    UserRewardsState,
)

JSON_VERSION: Final = 1


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _req(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _lot(lot: Lot) -> list[Any]:
    return [
        lot.id, lot.rule_id, lot.amount, lot.remaining, _ts(lot.earned_at), _ts(lot.expires_at), lot.pending,
        lot.reference, lot.reversed, lot.expired_amount, lot.expired, lot.reversals,
    ]  # fmt: skip


def _lot_from(row: list[Any]) -> Lot:
    i, rule, amount, remaining, earned, expires, pending, ref, rev, exp_amount, expired, *rest = row
    # States written before reversal ids were kept have 11 fields: no reversal recorded.
    reversals = list(rest[0]) if rest else []
    return Lot(
        i,
        rule,
        amount,
        remaining,
        _req(earned),
        _dt(expires),
        pending,
        ref,
        rev,
        exp_amount,
        expired,
        reversals,
    )


def _hold(hold: Hold) -> list[Any]:
    return [hold.id, hold.amount, _ts(hold.created_at), _ts(hold.expires_at), hold.allocations, hold.status]


def _streak(s: StreakState) -> list[Any]:
    return [None if s.last_date is None else s.last_date.isoformat(), s.length, s.freezes_used, s.longest]


def to_dict(state: UserRewardsState) -> dict[str, Any]:
    """The JSON-ready form (only str, int, bool, None, lists and dicts)."""
    b, r = state.book.balances, state.referral
    return {
        "v": JSON_VERSION,
        "userId": state.user_id,
        "balances": [b.available, b.pending, b.held, b.debt],
        "lots": [_lot(lot) for lot in state.book.lots.values()],
        "holds": [_hold(hold) for hold in state.book.holds.values()],
        "timezone": state.timezone,
        "traits": state.traits,
        "stage": state.stage,
        "activatedAt": _ts(state.activated_at),
        "segments": sorted(state.segments),
        "tier": [state.tier.level, _ts(state.tier.period_end)],
        "earned": [[_ts(e.at), e.points, e.award_id] for e in state.earned],
        "capUsage": state.cap_usage,
        "streak": _streak(state.streak),
        "badgeProgress": {k: str(v) for k, v in state.badge_progress.items()},
        "badges": state.badges,
        "referral": [r.referrer, _ts(r.claimed_at), r.paid, r.refused],
        "asOf": _ts(state.as_of),
    }


def to_json(state: UserRewardsState) -> bytes:
    return orjson.dumps(to_dict(state))


def from_json(data: bytes | str) -> UserRewardsState:
    return from_dict(orjson.loads(data))


def from_dict(d: dict[str, Any]) -> UserRewardsState:
    """The state from the JSON-decoded form of `to_dict`; ValueError on an unknown version."""
    if d.get("v") != JSON_VERSION:
        raise ValueError(f"unsupported rewards state version {d.get('v')!r}")
    user = d["userId"]
    lots = [_lot_from(row) for row in d["lots"]]
    holds = [
        Hold(i, amount, _req(created), _req(expires), [(lot_id, n) for lot_id, n in allocations], status)
        for i, amount, created, expires, allocations, status in d["holds"]
    ]
    book = PointsBook(user, Balances(*d["balances"]), {x.id: x for x in lots}, {h.id: h for h in holds})
    last_date, length, freezes_used, longest = d["streak"]
    referrer, claimed_at, paid, refused = d["referral"]
    return UserRewardsState(
        user_id=user,
        book=book,
        timezone=d["timezone"],
        traits=d["traits"],
        stage=d["stage"],
        activated_at=_dt(d["activatedAt"]),
        segments=set(d["segments"]),
        tier=TierStatus(d["tier"][0], _dt(d["tier"][1])),
        earned=[EarnedPoints(_req(at), points, award_id) for at, points, award_id in d["earned"]],
        cap_usage=d["capUsage"],
        streak=StreakState(
            None if last_date is None else date.fromisoformat(last_date), length, freezes_used, longest
        ),
        badge_progress={k: Decimal(v) for k, v in d["badgeProgress"].items()},
        badges=d["badges"],
        referral=ReferralState(referrer, _dt(claimed_at), paid, refused),
        as_of=_dt(d["asOf"]),
    )
