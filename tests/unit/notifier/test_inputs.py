"""Lifecycle and rewards records, read with their shared contracts, become inputs with scoped ids."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.notifier.domain.inputs import (
    ExpiryCheck,
    RewardsEvent,
    SegmentChanged,
    StageChanged,
    lifecycle_from_wire,
    rewards_from_wire,
)
from shared import topics
from shared.contracts import (
    BadgeEarned,
    ContractError,
    PointsAwarded,
    PointsExpired,
    PointsExpiringSoon,
    PointsRedeemed,
    SegmentEntered,
    SegmentExited,
    TierChanged,
)
from shared.contracts import StageChanged as StageChangedRecord
from shared.ids import input_id, timer_input_id

WHEN = datetime(2024, 3, 5, 15, tzinfo=UTC)
LATER = datetime(2024, 6, 1, tzinfo=UTC)
ENVELOPE: dict[str, Any] = {"user_id": "u1", "at": WHEN, "config_version": "abc"}


def test_stage_changed() -> None:
    record = StageChangedRecord(
        id="e1", from_stage="active", to_stage="at_risk", reason="idle 7d", activated=True, **ENVELOPE
    )
    parsed = lifecycle_from_wire(record.to_wire())
    assert parsed == StageChanged(
        input_id(topics.LIFECYCLE, "u1", "e1"), "u1", "active", "at_risk", WHEN, True, "idle 7d"
    )


def test_segment_events() -> None:
    entered = lifecycle_from_wire(SegmentEntered(id="e2", segment="core", **ENVELOPE).to_json())
    exited = lifecycle_from_wire(SegmentExited(id="e3", segment="core", **ENVELOPE).to_wire())
    assert entered == SegmentChanged(input_id(topics.LIFECYCLE, "u1", "e2"), "u1", "core", True, WHEN)
    assert isinstance(exited, SegmentChanged) and not exited.entered


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            PointsAwarded(id="r1", points=100, lot_id="lot-1", expires_at=LATER, balance=250, **ENVELOPE),
            {"points": 100, "balance": 250, "expires_at": LATER, "lot_id": "lot-1"},
        ),
        (
            PointsExpired(id="r1", points=40, lot_id="lot-1", balance=210, **ENVELOPE),
            {"points": 40, "balance": 210, "lot_id": "lot-1"},
        ),
        (
            PointsRedeemed(id="r1", points=50, redemption_id="x", balance=160, **ENVELOPE),
            {"points": 50, "balance": 160},
        ),
        (
            PointsExpiringSoon(id="r1", points=60, expires_at=LATER, **ENVELOPE),
            {"points": 60, "expires_at": LATER},
        ),
        (
            TierChanged(id="r1", from_tier="silver", to_tier="gold", reason="earned", **ENVELOPE),
            {"tier": "gold", "from_tier": "silver"},
        ),
        (BadgeEarned(id="r1", badge="streak-7", **ENVELOPE), {"badge": "streak-7"}),
    ],
)
def test_rewards_records(record: Any, expected: dict[str, Any]) -> None:
    parsed = rewards_from_wire(record.to_json())
    base = RewardsEvent(input_id(topics.REWARDS, "u1", "r1"), "u1", record.type, WHEN)
    assert parsed == RewardsEvent(**{**{f: getattr(base, f) for f in base.__slots__}, **expected})


@pytest.mark.parametrize(
    ("wire", "where"),
    [
        ({"type": "stage_changed", "userId": "u1", "to": "new", "at": "2024-03-05T15:00:00.000Z"}, "id"),
        (
            {
                "id": "e",
                "type": "stage_changed",
                "userId": "u1",
                "to": "nirvana",
                "from": None,
                "reason": "",
                "activated": False,
                "at": "2024-03-05T15:00:00.000Z",
                "configVersion": "x",
            },
            "to",
        ),
        ({"id": "e", "type": "mystery", "userId": "u1", "at": "2024-03-05T15:00:00.000Z"}, "mystery"),
    ],
)
def test_bad_lifecycle_records_raise_contract_errors(wire: dict[str, Any], where: str) -> None:
    with pytest.raises(ContractError, match=where):
        lifecycle_from_wire(wire)


def test_bad_rewards_record_raises_a_contract_error() -> None:
    wire = PointsAwarded(id="r", points=5, lot_id="l", balance=5, **ENVELOPE).to_wire()
    with pytest.raises(ContractError, match="points"):
        rewards_from_wire({**wire, "points": "5"})


def test_expiry_timer_input_id_is_the_shared_timer_id() -> None:
    check = ExpiryCheck.due("u1", WHEN)
    assert check.input_id == timer_input_id("notifier.points_expiring", "u1", WHEN)
