"""Trigger kinds and audience conditions beyond the shipped campaigns, and the projection's JSON."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.notifier.config import NotifierConfig, load_config
from services.notifier.domain.caps import SentRecord
from services.notifier.domain.decide import decide
from services.notifier.domain.inputs import PreferenceChanged, rewards_input
from services.notifier.domain.projection import Projection
from services.notifier.domain.projection_json import from_json, to_json
from shared.config import ConfigError
from shared.contracts import rewards as rw
from tests.unit.notifier.support import (
    at,
    fire,
    identify,
    rewards,
    segment,
    shipped_data,
    stage,
    track,
    unsubscribe,
)


def with_campaign(**campaign: Any) -> NotifierConfig:
    data = shipped_data()
    base = {"name": "probe", "topic": "engagement", "channel": "inapp", "quiet_hours": False,
            "template": {"title": "t", "body": "b"}}  # fmt: skip
    data["campaigns"] = [{**base, **campaign}]
    return NotifierConfig.model_validate(data)


def fired(cfg: NotifierConfig, p: Projection, item: Any) -> list[str]:
    return [s.campaign for s in decide(p, item, cfg, item.at).sends]


def test_segment_entered_and_exited() -> None:
    entered = with_campaign(trigger={"segment_entered": "core"})
    exited = with_campaign(trigger={"segment_exited": "core"})
    assert fired(entered, Projection("u1"), segment("core", at(0))) == ["probe"]
    p = Projection("u1")
    assert fired(exited, p, segment("core", at(1))) == []
    assert fired(exited, p, segment("core", at(2), entered=False)) == ["probe"]
    assert fired(entered, Projection("u1"), segment("vip", at(0))) == []


def test_raw_event_with_property_conditions() -> None:
    cfg = with_campaign(
        trigger={
            "event": {
                "name": "Order Completed",
                "where": [{"property": "revenue", "op": "gte", "value": 100}],
            }
        }
    )
    assert fired(cfg, Projection("u1"), track("Order Completed", at(0), revenue=150)) == ["probe"]
    assert fired(cfg, Projection("u1"), track("Order Completed", at(0), revenue=50)) == []
    assert fired(cfg, Projection("u1"), track("Order Completed", at(0), revenue="lots")) == []
    assert fired(cfg, Projection("u1"), track("Order Completed", at(0))) == []


def test_stage_trigger_from_filter() -> None:
    cfg = with_campaign(trigger={"stage_changed": {"to": ["active"], "from": ["dormant"]}})
    assert fired(cfg, Projection("u1"), stage("active", at(0), from_="dormant")) == ["probe"]
    assert fired(cfg, Projection("u1"), stage("active", at(0), from_="new")) == []


def test_rewards_trigger_by_tier_and_badge() -> None:
    gold = with_campaign(trigger={"rewards": {"event": "tier_changed", "tiers": ["gold"]}})
    assert fired(gold, Projection("u1"), rewards("tier_changed", at(0), tier="gold", from_tier="silver")) == [
        "probe"
    ]
    assert (
        fired(gold, Projection("u1"), rewards("tier_changed", at(0), tier="silver", from_tier="gold")) == []
    )
    badge = with_campaign(trigger={"rewards": {"event": "badge_earned"}})
    assert fired(badge, Projection("u1"), rewards("badge_earned", at(0), badge="streak-7")) == ["probe"]


def test_tier_up_follows_the_rewards_event_and_knows_the_shipped_tiers() -> None:
    """The shipped tier_up campaign greets a first promotion (member -> silver), whichever way
    the rewards event says the tier moved, and never a demotion."""
    cfg = with_campaign(trigger={"rewards": {"event": "tier_changed", "direction": "up"}})
    up = rewards("tier_changed", at(0), tier="silver", from_tier="member")
    assert fired(cfg, Projection("u1"), up) == ["probe"]
    down = rewards("tier_changed", at(0), tier="silver", from_tier="gold")
    assert fired(cfg, Projection("u1"), down) == []
    # A tier the notifier's list does not know: the event's own direction decides.
    odd = rewards("tier_changed", at(0), tier="vip", from_tier="member", direction="up")
    assert fired(cfg, Projection("u1"), odd) == ["probe"]
    assert fired(cfg, Projection("u1"), replace(odd, direction="down")) == []


def test_a_tier_changed_record_carries_its_direction_from_the_reason() -> None:
    record = rw.parse_rewards(
        {"id": "r1", "type": "tier_changed", "userId": "u1", "at": "2026-01-01T00:00:00Z",
         "configVersion": "v", "from": "member", "to": "silver", "reason": "promoted"}
    )  # fmt: skip
    assert rewards_input(record).direction == "up"


def test_audience_conditions_on_traits_segments_and_ages() -> None:
    cfg = with_campaign(
        trigger={"event": {"name": "Opened"}},
        reentry="1h",
        audience={
            "all": [
                {"trait": "plan", "op": "in", "value": ["pro", "team"]},
                {"segment": "core"},
                {"field": "signup_age", "op": "gte", "value": "7d"},
                {"not": {"field": "nps_category", "op": "eq", "value": "detractor"}},
            ]
        },
    )
    p = Projection("u1")
    fire(p, track("Signed Up", at(0)), cfg)
    fire(p, identify(at(0), plan="pro"), cfg)
    assert fired(cfg, p, track("Opened", at(8))) == []  # not in core yet
    fire(p, segment("core", at(8)), cfg)
    assert fired(cfg, p, track("Opened", at(8, 1))) == ["probe"]
    fire(p, track("NPS Submitted", at(8, 2), score=2), cfg)
    assert fired(cfg, p, track("Opened", at(9))) == []


def test_resubscribing_restores_messages_and_late_changes_lose() -> None:
    p = Projection("u1")
    fire(p, unsubscribe("topic:rewards", at(1)))
    assert not p.subscribed("email", "rewards")
    fire(p, PreferenceChanged("pref-x", "u1", "topic:rewards", True, at(2)))
    assert p.subscribed("email", "rewards")
    fire(p, unsubscribe("topic:rewards", at(0)))  # an older change arriving late
    assert p.subscribed("email", "rewards")


def test_input_of_another_user_is_refused() -> None:
    with pytest.raises(ValueError, match="applied to the projection"):
        fire(Projection("u2"), track("Signed Up", at(0), "u1"))


def test_reentry_must_be_once_or_positive(tmp_path: Path) -> None:
    data = shipped_data()
    data["campaigns"][2]["reentry"] = 0
    path = tmp_path / "notifier.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"campaigns\[2\]\.reentry.*'once' or a positive duration"):
        load_config(path)


def test_projection_json_round_trip() -> None:
    p = Projection("u1")
    fire(p, identify(at(0), email="a@example.com", first_name="Ada", score=3.5, vip=True))
    fire(p, stage("activated", at(1)))
    fire(p, stage("at_risk", at(9)))
    fire(p, segment("core", at(2)))
    fire(p, rewards("points_awarded", at(3), points=100, expires_at=at(30)))
    fire(p, track("NPS Submitted", at(4), score=9, comment="great"))
    fire(p, unsubscribe("channel:email", at(5)))
    p.sent.append(SentRecord("welcome", at(5)))
    assert p.entries  # some campaigns were entered
    data = to_json(p)
    assert yaml.safe_load(yaml.safe_dump(data)) == data  # plain JSON types only
    assert from_json(data) == p
    with pytest.raises(ValueError, match="format version"):
        from_json({**data, "v": 99})
