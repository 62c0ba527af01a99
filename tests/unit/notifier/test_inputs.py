"""Wire parsing of lifecycle and rewards events, with scoped input ids."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.notifier.domain.inputs import (
    ExpiryCheck,
    SegmentChanged,
    StageChanged,
    lifecycle_from_wire,
    rewards_from_wire,
)
from shared import topics
from shared.events import InvalidEvent
from shared.ids import input_id, timer_input_id

AT = "2024-03-05T15:00:00.000Z"
WHEN = datetime(2024, 3, 5, 15, tzinfo=UTC)


def test_stage_changed() -> None:
    wire = {"id": "e1", "type": "stage_changed", "userId": "u1", "from": "active", "to": "at_risk",
            "reason": "idle 7d", "activated": True, "at": AT, "configVersion": "abc"}  # fmt: skip
    parsed = lifecycle_from_wire(wire)
    assert parsed == StageChanged(
        input_id(topics.LIFECYCLE, "u1", "e1"), "u1", "active", "at_risk", WHEN, True, "idle 7d"
    )


def test_segment_events() -> None:
    entered = lifecycle_from_wire(
        {"id": "e2", "type": "segment_entered", "userId": "u1", "segment": "core", "at": AT}
    )
    exited = lifecycle_from_wire(
        {"id": "e3", "type": "segment_exited", "userId": "u1", "segment": "core", "at": AT}
    )
    assert isinstance(entered, SegmentChanged) and entered.entered and entered.segment == "core"
    assert isinstance(exited, SegmentChanged) and not exited.entered


def test_rewards_events() -> None:
    award = rewards_from_wire({"id": "r1", "type": "points_awarded", "userId": "u1", "at": AT, "points": 100,
                               "balance": 250, "expiresAt": "2024-06-01T00:00:00Z"})  # fmt: skip
    assert (award.points, award.balance) == (100, 250)
    assert award.expires_at == datetime(2024, 6, 1, tzinfo=UTC)
    assert award.input_id == input_id(topics.REWARDS, "u1", "r1")
    tier = rewards_from_wire(
        {"id": "r2", "type": "tier_changed", "userId": "u1", "at": AT, "from": "silver", "to": "gold"}
    )
    assert (tier.from_tier, tier.tier) == ("silver", "gold")


@pytest.mark.parametrize(
    ("wire", "field"),
    [
        ({"type": "stage_changed", "userId": "u1", "to": "new", "at": AT}, "id"),
        ({"id": "e", "type": "stage_changed", "to": "new", "at": AT}, "userId"),
        ({"id": "e", "type": "stage_changed", "userId": "u1", "at": AT}, "to"),
        ({"id": "e", "type": "stage_changed", "userId": "u1", "to": "new", "at": "yesterday"}, "at"),
        ({"id": "e", "type": "mystery", "userId": "u1", "at": AT}, "type"),
    ],
)
def test_bad_lifecycle_events_are_invalid_for_the_dead_letter_topic(wire: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        lifecycle_from_wire(wire)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("wire", "field"),
    [
        ({"id": "r", "type": "points_awarded", "userId": "u1", "at": AT, "points": "100"}, "points"),
        ({"id": "r", "type": "points_awarded", "userId": "u1", "at": AT, "points": True}, "points"),
        ({"id": "r", "type": "jackpot", "userId": "u1", "at": AT}, "type"),
        ({"id": "r", "type": "points_awarded", "userId": "u1", "at": AT, "expiresAt": 5}, "expiresAt"),
    ],
)
def test_bad_rewards_events(wire: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        rewards_from_wire(wire)
    assert info.value.field == field


def test_expiry_timer_input_id_is_the_shared_timer_id() -> None:
    check = ExpiryCheck.due("u1", WHEN)
    assert check.input_id == timer_input_id("notifier.points_expiring", "u1", WHEN)
