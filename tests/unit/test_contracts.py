"""The typed topic contracts: every model survives its wire form, and bad records are refused."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from shared.contracts import (
    BadgeEarned,
    ContractError,
    ContractModel,
    DeliveryOutcome,
    PointsAwarded,
    PointsExpired,
    PointsExpiringSoon,
    PointsRedeemed,
    PointsReversed,
    ReferralRewarded,
    SegmentEntered,
    SegmentExited,
    StageChanged,
    StreakExtended,
    TierChanged,
    parse_delivery,
    parse_lifecycle,
    parse_rewards,
)
from shared.events import format_ts

AT = datetime(2024, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
BASE: dict[str, Any] = {"id": "out-1", "user_id": "u-ü-1", "at": AT, "config_version": "cfg-1"}

LIFECYCLE = [
    StageChanged(**BASE, from_stage=None, to_stage="new", reason="signed up", activated=False),
    StageChanged(**BASE, from_stage="active", to_stage="at_risk", reason="idle >= 7d", activated=True),
    SegmentEntered(**BASE, segment="big_spenders"),
    SegmentExited(**BASE, segment="big_spenders"),
]
REWARDS = [
    PointsAwarded(**BASE, points=50, rule_id="first-order", lot_id="lot-1", expires_at=AT, balance=50),
    PointsAwarded(**BASE, points=5, lot_id="lot-2", balance=55, source_id="in-1"),
    PointsRedeemed(**BASE, points=20, redemption_id="r-1", balance=35),
    PointsExpired(**BASE, points=30, lot_id="lot-1", balance=5),
    PointsReversed(**BASE, points=5, reverses="out-0", reason="order refunded", balance=0),
    PointsExpiringSoon(**BASE, points=30, expires_at=AT + timedelta(days=7)),
    TierChanged(**BASE, from_tier=None, to_tier="silver", reason="earned 1000 in 365d"),
    TierChanged(**BASE, from_tier="gold", to_tier="silver", reason="period end", period_end=AT),
    BadgeEarned(**BASE, badge="ten-lessons"),
    StreakExtended(**BASE, days=7, local_date=date(2024, 3, 1)),
    ReferralRewarded(
        **{**BASE, "user_id": "ref"},
        role="referrer",
        referrer_id="ref",
        referee_id="new",
        points=100,
        balance=100,
    ),
]
DELIVERIES = [
    DeliveryOutcome(**BASE, outcome="sent", campaign="winback", channel="email", send_key="k1", attempts=1),
    DeliveryOutcome(
        **BASE, outcome="capped", campaign="winback", channel="inapp", send_key="k2", reason="3/7d"
    ),
    DeliveryOutcome(
        **BASE,
        outcome="deferred",
        campaign="c",
        channel="webhook",
        send_key="k3",
        deferred_until=AT,
        variant="b",
    ),
    DeliveryOutcome(
        **BASE,
        outcome="suppressed",
        campaign="c",
        channel="email",
        send_key="k4",
        reason="holdout",
        holdout=True,
    ),
    DeliveryOutcome(
        **BASE, outcome="failed", campaign="c", channel="webhook", send_key="k5", reason="HTTP 410"
    ),
]


@pytest.mark.parametrize(
    ("model", "parse"),
    [(m, parse_lifecycle) for m in LIFECYCLE]
    + [(m, parse_rewards) for m in REWARDS]
    + [(m, parse_delivery) for m in DELIVERIES],
    ids=lambda v: getattr(v, "type", ""),
)
def test_every_model_round_trips_through_its_wire_form(model: ContractModel, parse: Any) -> None:
    wire = model.to_json()
    parsed = parse(wire)
    assert parsed == model
    assert type(parsed) is type(model)
    assert parse(model.to_wire()) == model
    body = orjson.loads(wire)
    assert body["schemaVersion"] == 1
    assert body["userId"] == model.user_id
    assert body["at"] == "2024-03-01T09:30:15.123Z"  # UTC, milliseconds, Z
    assert all("_" not in key for key in body)  # camelCase on the wire


def test_stage_changed_keeps_the_wire_format_the_segmenter_has_always_written() -> None:
    old = {  # a record from before typed contracts: no schemaVersion
        "id": "x",
        "type": "stage_changed",
        "userId": "u1",
        "from": "new",
        "to": "active",
        "reason": "idle < 7d",
        "activated": True,
        "at": "2024-03-01T09:00:00.000Z",
        "configVersion": "dev",
    }
    event = parse_lifecycle(orjson.dumps(old))
    assert isinstance(event, StageChanged)
    assert (event.from_stage, event.to_stage, event.schema_version) == ("new", "active", 1)
    assert event.at == datetime(2024, 3, 1, 9, tzinfo=UTC)
    assert event.to_wire() == {**old, "schemaVersion": 1}


def test_instants_are_normalised_to_utc_milliseconds() -> None:
    paris = timezone(timedelta(hours=1))
    event = SegmentEntered(
        **{**BASE, "at": datetime(2024, 3, 1, 10, 0, 0, 999999, tzinfo=paris)}, segment="s"
    )
    assert event.at == datetime(2024, 3, 1, 9, 0, 0, 999000, tzinfo=UTC)
    assert orjson.loads(event.to_json())["at"] == "2024-03-01T09:00:00.999Z"


@pytest.mark.parametrize(
    "at", [datetime(1, 1, 2, tzinfo=UTC), datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), AT]
)
def test_any_instant_round_trips_in_the_format_of_shared_events(at: datetime) -> None:
    event = SegmentEntered(**{**BASE, "at": at}, segment="s")
    assert parse_lifecycle(event.to_json()) == event
    if at.year >= 1000:
        assert event.to_wire()["at"] == format_ts(at)


def test_unknown_fields_are_ignored_and_later_revisions_accepted() -> None:
    wire = {**LIFECYCLE[2].to_wire(), "schemaVersion": 2, "weight": 0.5}
    assert parse_lifecycle(orjson.dumps(wire)) == LIFECYCLE[2].model_copy(update={"schema_version": 2})


STAGE = LIFECYCLE[0].to_wire()


@pytest.mark.parametrize(
    ("record", "names"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        ({**STAGE, "type": "stage_exploded"}, "type"),
        ({k: v for k, v in STAGE.items() if k != "type"}, "type"),
        ({k: v for k, v in STAGE.items() if k != "userId"}, "userId"),
        ({**STAGE, "userId": ""}, "userId"),
        ({**STAGE, "to": "sleepy"}, "to"),
        ({**STAGE, "at": "2024-03-01T09:00:00"}, "at"),  # naive: no offset
        ({**STAGE, "at": "yesterday"}, "at"),
        ({**STAGE, "activated": "maybe"}, "activated"),
        ({**STAGE, "schemaVersion": 0}, "schemaVersion"),
        ({**STAGE, "schemaVersion": "1"}, "schemaVersion"),
        ({**LIFECYCLE[2].to_wire(), "segment": ""}, "segment"),
    ],
)
def test_bad_lifecycle_records_raise_a_contract_error_naming_the_field(record: Any, names: str) -> None:
    raw = record if isinstance(record, bytes) else orjson.dumps(record)
    with pytest.raises(ContractError, match=names) as caught:
        parse_lifecycle(raw)
    assert caught.value.topic == "userops.lifecycle.v1"


AWARD = REWARDS[0].to_wire()


@pytest.mark.parametrize(
    ("record", "names"),
    [
        ({**AWARD, "points": 0}, "points"),
        ({**AWARD, "points": -5}, "points"),
        ({**AWARD, "points": 1.5}, "points"),
        ({**AWARD, "points": "10"}, "points"),
        ({**AWARD, "balance": -1}, "balance"),
        ({k: v for k, v in AWARD.items() if k != "lotId"}, "lotId"),
        ({**AWARD, "type": "points_minted"}, "type"),
        ({**REWARDS[-1].to_wire(), "refereeId": "ref"}, "self-referral"),
        ({**REWARDS[-1].to_wire(), "userId": "someone"}, "referrer"),
        ({**REWARDS[9].to_wire(), "days": 0}, "days"),
        ({**REWARDS[9].to_wire(), "localDate": "March 1st"}, "localDate"),
    ],
)
def test_bad_rewards_records_are_refused(record: dict[str, Any], names: str) -> None:
    with pytest.raises(ContractError, match=names):
        parse_rewards(orjson.dumps(record))


SENT = DELIVERIES[0].to_wire()


@pytest.mark.parametrize(
    ("record", "names"),
    [
        ({**SENT, "outcome": "lost"}, "outcome"),
        ({**SENT, "channel": "pigeon"}, "channel"),
        ({**SENT, "sendKey": ""}, "sendKey"),
        ({**SENT, "outcome": "deferred"}, "deferredUntil"),
        ({**SENT, "deferredUntil": "2024-03-01T09:00:00.000Z"}, "deferredUntil"),
        ({**SENT, "outcome": "failed"}, "reason"),
        ({**SENT, "type": "stage_changed"}, "type"),
    ],
)
def test_bad_delivery_records_are_refused(record: dict[str, Any], names: str) -> None:
    with pytest.raises(ContractError, match=names):
        parse_delivery(orjson.dumps(record))


def test_producers_cannot_build_an_invalid_record() -> None:
    with pytest.raises(ValueError, match="to"):
        StageChanged(**BASE, from_stage=None, to_stage="sleepy", reason="", activated=False)
    with pytest.raises(ValueError, match="points"):
        PointsRedeemed(**BASE, points=0, redemption_id="r", balance=0)
    with pytest.raises(ValueError, match="at"):
        SegmentEntered(**{**BASE, "at": datetime(2024, 3, 1)}, segment="s")  # naive
