"""The notifier's YAML: the shipped file validates, and every kind of mistake stops the service
with a message naming the file, the field path, the campaign and the problem."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.notifier.config import load_config
from services.notifier.domain.triggers import (
    EventTrigger,
    NpsTrigger,
    PointsExpiringTrigger,
    RewardsTrigger,
    StageTrigger,
)
from shared.config import ConfigError, config_version
from tests.unit.notifier.support import SHIPPED, shipped_data


def test_shipped_file_declares_the_campaigns_of_the_issue() -> None:
    cfg = load_config(SHIPPED)
    assert cfg.version == config_version(SHIPPED)
    by_name = {c.name: c for c in cfg.campaigns}
    assert list(by_name) == [
        "welcome",
        "activation_nudge",
        "at_risk_winback",
        "points_expiring",
        "tier_up",
        "nps_survey",
        "detractor_followup",
    ]
    welcome, nudge, winback = by_name["welcome"], by_name["activation_nudge"], by_name["at_risk_winback"]
    assert isinstance(welcome.trigger, EventTrigger) and welcome.channel == "inapp"
    assert nudge.delay == timedelta(hours=24) and nudge.channel == "email" and nudge.recheck is not None
    assert isinstance(winback.trigger, StageTrigger) and winback.trigger.stage_changed.to == ["at_risk"]
    assert (winback.channel, winback.endpoint, winback.holdout) == ("webhook", "push_provider", 0.10)
    assert [v.name for v in winback.variants] == ["miss_you", "points_left"]
    assert winback.goal is not None and winback.goal.within == timedelta(days=7)
    expiring = by_name["points_expiring"].trigger
    assert isinstance(expiring, PointsExpiringTrigger)
    assert expiring.points_expiring.within == timedelta(days=7)
    tier = by_name["tier_up"].trigger
    assert isinstance(tier, RewardsTrigger) and tier.rewards.direction == "up"
    assert by_name["nps_survey"].delay == timedelta(days=30)
    detractor = by_name["detractor_followup"]
    assert isinstance(detractor.trigger, NpsTrigger) and detractor.trigger.nps.category == ["detractor"]
    assert detractor.channel == "webhook" and not detractor.global_caps
    # "churned for over 180 days: stop messaging"
    assert cfg.suppress_churned_after == timedelta(days=180)
    assert cfg.quiet_hours is not None and (cfg.quiet_hours.start, cfg.quiet_hours.end) == (time(21), time(8))


def test_single_template_is_one_default_variant() -> None:
    welcome = load_config(SHIPPED).campaigns[0]
    assert [(v.name, v.weight) for v in welcome.variants] == [("default", 1.0)]


def error_of(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "notifier.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def _campaign(data: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in data["campaigns"] if c["name"] == name)
    return found


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        (
            lambda d: _campaign(d, "welcome").update(trigger={"signed_up": {}}),
            "campaigns[0].trigger",
            "a trigger is a mapping with exactly one of the keys",
        ),
        (
            lambda d: _campaign(d, "welcome")["template"].update(body="Hi {{ frist_name }}"),
            "campaigns[0].template.body",
            "unknown variable(s) frist_name",
        ),
        (
            lambda d: _campaign(d, "welcome")["template"].update(body="{% if %}"),
            "campaigns[0].template.body",
            "template does not compile",
        ),
        (
            lambda d: _campaign(d, "welcome")["template"].update(body="{{ traits.frist_name }}"),
            "campaigns[0].template.body",
            "undeclared trait(s) frist_name",
        ),
        (
            lambda d: _campaign(d, "at_risk_winback")["variants"][1].update(weight=0.4),
            "campaigns[2].variants",
            "variant weights must sum to 1, not 0.9",
        ),
        (
            lambda d: _campaign(d, "at_risk_winback").update(holdout=1.0),
            "campaigns[2].holdout",
            "less than 1",
        ),
        (
            lambda d: _campaign(d, "at_risk_winback").update(holdout=-0.1),
            "campaigns[2].holdout",
            "greater than or equal to 0",
        ),
        (
            lambda d: _campaign(d, "at_risk_winback")["variants"][0]["template"]["payload"].update(
                x="{{ oops }}"
            ),
            "campaigns[2].variants[0].template.payload.x",
            "unknown variable(s) oops",
        ),
        (
            lambda d: _campaign(d, "at_risk_winback").update(endpoint="nowhere"),
            "campaigns[2].endpoint",
            "not declared under endpoints",
        ),
        (
            lambda d: _campaign(d, "at_risk_winback").update(audience={"all": [{"feild": "stage"}]}),
            "campaigns[2].audience.all[0]",
            "a condition is a mapping with one of the keys",
        ),
        (
            lambda d: _campaign(d, "tier_up")["template"].pop("subject"),
            "campaigns[4]",
            "an email template needs subject",
        ),
        (
            lambda d: _campaign(d, "tier_up").update(topic="news"),
            "campaigns[4].topic",
            "topic 'news' is not among topics",
        ),
        (
            lambda d: _campaign(d, "tier_up")["trigger"]["rewards"].update(event="points_awarded"),
            "campaigns[4].trigger.rewards",
            "direction and tiers apply to event tier_changed only",
        ),
        (
            lambda d: _campaign(d, "activation_nudge").update(delay="tomorrow"),
            "campaigns[1].delay",
            "is not a duration",
        ),
        (lambda d: d.update(timezone="Mars/Olympus"), "timezone", "unknown timezone"),
        (lambda d: d.update(quiet_hours={"start": 1260, "end": "08:00"}), "quiet_hours.start", "in quotes"),
        (lambda d: d.update(quiet_hours={"start": "08:00", "end": "08:00"}), "quiet_hours", "must differ"),
        (lambda d: d.update(surprise=1), "surprise", "Extra inputs are not permitted"),
    ],
)
def test_errors_name_file_field_campaign_and_problem(
    tmp_path: Path, change: Any, field: str, problem: str
) -> None:
    data = shipped_data()
    change(data)
    message = error_of(tmp_path, data)
    assert message.startswith(f"{tmp_path / 'notifier.yaml'}: ")
    assert f"field '{field}'" in message
    assert problem in message
    if field.startswith("campaigns["):
        index = int(field[len("campaigns[") : field.index("]")])
        assert f"campaign '{data['campaigns'][index]['name']}'" in message


def test_duplicate_campaign_names_are_refused(tmp_path: Path) -> None:
    data = shipped_data()
    data["campaigns"].append(dict(data["campaigns"][0]))
    assert "campaign name 'welcome' is used twice" in error_of(tmp_path, data)


def test_template_and_variants_together_are_refused(tmp_path: Path) -> None:
    data = shipped_data()
    winback = _campaign(data, "at_risk_winback")
    winback["template"] = winback["variants"][0]["template"]
    assert "give either template or variants, not both" in error_of(tmp_path, data)


def test_reentry_once_or_a_duration() -> None:
    cfg = load_config(SHIPPED)
    by_name = {c.name: c for c in cfg.campaigns}
    assert by_name["welcome"].reentry is None
    assert by_name["at_risk_winback"].reentry == timedelta(days=30)
