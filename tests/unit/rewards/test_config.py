"""The rewards YAML: the example config loads with the issue's rules, and every error names the
file, the field path and the problem."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.rewards.config import RewardsConfig, load_config
from shared.config import ConfigError, config_version
from tests.unit.rewards.support import EXAMPLE

LESSON: dict[str, Any] = {"id": "lesson", "event": "Lesson Completed", "points": 10}


def error_of(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "rewards.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path))
    return message


def test_the_example_config_loads_with_the_issue_rules() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.version == config_version(EXAMPLE)
    lesson = cfg.rule("lesson_completed")
    assert lesson is not None and lesson.points == 10
    assert [(c.limit, c.period) for c in lesson.caps] == [(50, "day")]
    purchase = cfg.rule("purchase")
    assert purchase is not None and purchase.proportional is not None
    assert purchase.proportional.points_per_unit == Decimal(1) and purchase.rounding == "floor"
    assert purchase.tier_multiplier
    assert cfg.tiers is not None and cfg.tiers.levels[-1].name == "gold"
    assert cfg.tiers.levels[-1].multiplier == Decimal("1.5")
    activation, winback = cfg.rule("activation_bonus"), cfg.rule("winback")
    assert activation is not None and (activation.lifecycle, activation.points) == ("activated", 100)
    assert winback is not None and (winback.lifecycle, winback.points) == ("reactivated", 200)
    assert winback.budget is not None and winback.budget.limit == 1_000_000
    assert cfg.streak is not None and [(b.streak, b.points) for b in cfg.badges] == [(7, 70)]
    assert cfg.referrals is not None
    assert (cfg.referrals.referrer_points, cfg.referrals.referee_points) == (200, 200)
    assert cfg.expiry.after == timedelta(days=365)


def test_defaults_are_an_empty_rule_set() -> None:
    cfg = RewardsConfig()
    assert (cfg.rules, cfg.tiers, cfg.default_timezone, cfg.expiry.after) == ([], None, "UTC", None)


def test_unknown_fields_are_named(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"rules": [{**LESSON, "pointz": 3}]})
    assert "field 'rules[0].pointz': Extra inputs are not permitted" in message
    message = error_of(tmp_path, {"rules": [{**LESSON, "conditions": [{"propertee": "x", "value": 1}]}]})
    assert "field 'rules[0].conditions[0].propertee'" in message


def test_unknown_event_field_in_a_condition_is_named(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"rules": [{**LESSON, "conditions": [{"field": "plan", "value": "pro"}]}]})
    assert "field 'rules[0].conditions[0].field'" in message
    assert "'stage', 'tier' or 'segment'" in message


def test_negative_points_are_named(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"rules": [{**LESSON, "points": -5}]})
    assert "field 'rules[0].points': Input should be greater than or equal to 1" in message


def test_a_cap_without_a_period_is_named(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"rules": [{**LESSON, "caps": [{"limit": 50}]}]})
    assert "field 'rules[0].caps[0].period': Field required" in message


def test_a_budget_smaller_than_one_award_is_named(tmp_path: Path) -> None:
    rule = {**LESSON, "points": 100, "budget": {"limit": 50, "overflow": "stop"}}
    message = error_of(tmp_path, {"rules": [LESSON | {"id": "other"}, rule]})
    assert "field 'rules[1].budget.limit': budget 50 is smaller than one award (100 points)" in message


def test_a_budget_needs_an_explicit_overflow_policy(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"rules": [{**LESSON, "budget": {"limit": 500}}]})
    assert "field 'rules[0].budget.overflow': Field required" in message


def test_non_finite_amounts_are_refused(tmp_path: Path) -> None:
    rule = {
        "id": "buy",
        "event": "Order Completed",
        "proportional": {"property": "revenue", "points_per_unit": "nan"},
    }
    message = error_of(tmp_path, {"rules": [rule]})
    assert "field 'rules[0].proportional.points_per_unit'" in message and "finite" in message
    rule["proportional"] = {"property": "revenue", "points_per_unit": -1}
    assert "greater than zero" in error_of(tmp_path, {"rules": [rule]})


def test_a_rule_has_one_trigger_and_one_amount(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"rules": [{**LESSON, "lifecycle": "activated"}]})
    assert "field 'rules[0]'" in message and "exactly one trigger" in message
    message = error_of(tmp_path, {"rules": [{"id": "x", "event": "E"}]})
    assert "exactly one of: points, proportional" in message
    message = error_of(tmp_path, {"rules": [{"id": "x", "lifecycle": "sleeping", "points": 1}]})
    assert "field 'rules[0].lifecycle'" in message


def test_unknown_tiers_and_timezones_are_named(tmp_path: Path) -> None:
    cond = {"field": "tier", "value": "platinum"}
    tiers = {"levels": [{"name": "member", "min_points": 0}, {"name": "gold", "min_points": 10}]}
    message = error_of(
        tmp_path, {"tiers": tiers, "rules": [{**LESSON, "multipliers": [{"when": [cond], "factor": 2}]}]}
    )
    assert "field 'rules[0].multipliers[0].when[0].value': unknown tier 'platinum'" in message
    assert "field 'default_timezone'" in error_of(tmp_path, {"default_timezone": "Mars/Olympus"})
    message = error_of(tmp_path, {"rules": [{**LESSON, "tier_multiplier": True}]})
    assert "field 'rules[0].tier_multiplier': needs a `tiers` section" in message


def test_tier_levels_are_checked(tmp_path: Path) -> None:
    levels = [{"name": "member", "min_points": 0}, {"name": "gold", "min_points": 0}]
    assert "strictly ascending" in error_of(tmp_path, {"tiers": {"levels": levels}})
    levels = [{"name": "silver", "min_points": 10}]
    assert "min_points 0" in error_of(tmp_path, {"tiers": {"levels": levels}})


def test_duplicate_ids_and_orphan_streak_badges_are_named(tmp_path: Path) -> None:
    assert "field 'rules[1].id'" in error_of(tmp_path, {"rules": [LESSON, LESSON]})
    message = error_of(tmp_path, {"badges": [{"id": "wk", "streak": 7}]})
    assert "field 'badges[0].streak': a streak badge needs a `streak` section" in message


def test_expiry_warning_must_fall_inside_the_expiry(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"expiry": {"after": "30d", "warn_before": "30d"}})
    assert "field 'expiry'" in message and "warn_before" in message


def test_durations_are_read_like_every_userops_config(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"expiry": {"after": "1 year"}})
    assert "field 'expiry.after'" in message and "not a duration" in message
