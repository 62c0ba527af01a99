"""Send outcomes as `userops.deliveries.v1` records (the shared contract)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.notifier.domain.delivery import delivery_record
from services.notifier.domain.sends import SendOutcome
from shared.contracts import parse_delivery
from shared.ids import output_id

AT = datetime(2024, 3, 5, 15, tzinfo=UTC)
SENT = SendOutcome("sent", "key-1", "tier_up", "default", "email", "u1", "trigger-1", AT)


def round_trip(outcome: SendOutcome) -> dict[str, object]:
    record = delivery_record(outcome, "cfg-1", attempts=1)
    assert parse_delivery(record.to_json()) == record
    return record.to_wire()


def test_sent() -> None:
    wire = round_trip(SENT)
    assert wire["outcome"] == "sent" and wire["variant"] == "default" and wire["holdout"] is False
    assert wire["id"] == output_id("key-1", "delivery:sent")
    assert (wire["sendKey"], wire["triggerId"], wire["configVersion"]) == ("key-1", "trigger-1", "cfg-1")


def test_holdout_is_suppressed_without_a_variant() -> None:
    wire = round_trip(replace(SENT, kind="suppressed", variant="holdout", reason="holdout"))
    assert (wire["outcome"], wire["holdout"], wire["variant"], wire["reason"]) == (
        "suppressed",
        True,
        None,
        "holdout",
    )


@pytest.mark.parametrize("reason", ["conditions_no_longer_hold", "expired", "campaign_disabled"])
def test_cancelled_is_published_as_suppressed_with_its_reason(reason: str) -> None:
    wire = round_trip(replace(SENT, kind="cancelled", reason=reason))
    assert (wire["outcome"], wire["reason"]) == ("suppressed", reason)


def test_each_deferral_has_its_own_id_and_until() -> None:
    first = replace(SENT, kind="deferred", reason="quiet_hours", until=AT + timedelta(hours=10))
    second = replace(first, until=AT + timedelta(days=1, hours=10))
    one, two = round_trip(first), round_trip(second)
    assert one["outcome"] == "deferred" and one["deferredUntil"] == "2024-03-06T01:00:00.000Z"
    assert one["id"] != two["id"]


def test_capped_and_failed_keep_their_reason() -> None:
    assert round_trip(replace(SENT, kind="capped", reason="global:2/1d"))["reason"] == "global:2/1d"
    assert round_trip(replace(SENT, kind="failed", reason="template subject: x"))["outcome"] == "failed"
