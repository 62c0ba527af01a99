"""The segmenter's YAML rules: documented defaults, durations, and errors that name the path."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from services.segmenter.config import SegmenterConfig, load_config
from services.segmenter.domain.conditions import (
    AllOf,
    EventCountCondition,
    FieldCondition,
    NotDoneCondition,
    NotOf,
    TraitCondition,
)
from services.segmenter.domain.duration import format_duration, parse_duration
from shared.config import ConfigError, config_version, load_yaml

REPO = Path(__file__).resolve().parents[3]


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "segmenter.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def error_of(tmp_path: Path, data: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    return str(info.value)


def test_defaults_follow_the_design() -> None:
    lc = SegmenterConfig().lifecycle
    assert (lc.at_risk_after, lc.dormant_after, lc.churned_after) == (
        timedelta(days=7),
        timedelta(days=30),
        timedelta(days=90),
    )
    assert lc.reactivation_gap == timedelta(days=30)
    assert lc.reactivated_hold == lc.new_window == lc.activated_window == timedelta(days=7)
    cfg = SegmenterConfig()
    assert cfg.activity.types == ["track", "page", "screen"]
    assert (cfg.revenue.events, cfg.revenue.property) == (["Order Completed"], "revenue")
    assert (cfg.core.window, cfg.core.enter_days) == (timedelta(days=28), 12)
    assert cfg.core.stay_days < cfg.core.enter_days
    assert [s.name for s in cfg.rfm.segments][:1] == ["champions"]


def test_shipped_file_loads_and_matches_the_defaults(tmp_path: Path) -> None:
    path = REPO / "config" / "segmenter.yaml"
    cfg = load_config(path)
    default = SegmenterConfig()
    assert cfg.version == config_version(path)
    assert cfg.lifecycle == default.lifecycle
    assert cfg.rfm == default.rfm
    assert cfg.core == default.core
    assert [r.event for r in cfg.activation.any_of] == ["Order Completed", "Lesson Completed"]
    assert {s.name for s in cfg.segments} >= {"engaged_learners", "stalled_trial"}


def test_load_yaml_works_too(tmp_path: Path) -> None:
    cfg = load_yaml(write(tmp_path, {"lifecycle": {"at_risk_after": "3d"}}), SegmenterConfig)
    assert cfg.lifecycle.at_risk_after == timedelta(days=3)
    assert cfg.version == "dev"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("90s", timedelta(seconds=90)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("2w", timedelta(days=14)),
        (45, timedelta(seconds=45)),
        (" 15 m", timedelta(minutes=15)),
    ],
)
def test_durations(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("bad", ["7", "7x", "d7", "", "-3d", True, [1]])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_unknown_field_is_named(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"lifecyle": {"at_risk_after": "7d"}})
    assert str(tmp_path / "segmenter.yaml") in message
    assert "field 'lifecyle': Extra inputs are not permitted" in message
    message = error_of(tmp_path, {"lifecycle": {"at_risk": "7d"}})
    assert "field 'lifecycle.at_risk'" in message


def test_bad_duration_is_named(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"lifecycle": {"dormant_after": "30 days"}})
    assert "field 'lifecycle.dormant_after'" in message
    assert "not a duration" in message


def test_threshold_order_is_checked(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"lifecycle": {"at_risk_after": "40d"}})
    assert "at_risk_after < dormant_after < churned_after" in message


def _segments(rule: object) -> dict[str, object]:
    ok = {"trait": "plan", "op": "eq", "value": "pro"}
    return {
        "segments": [
            {"name": "a", "rule": ok},
            {"name": "b", "rule": ok},
            {"name": "c", "rule": rule},
        ]
    }


def test_unknown_operator_names_its_path(tmp_path: Path) -> None:
    rule = {"all": [{"trait": "plan", "op": "eq", "value": 1}, {"trait": "x", "op": "like"}]}
    message = error_of(tmp_path, _segments(rule))
    assert "field 'segments[2].rule.all[1].op'" in message
    assert "'eq'" in message  # lists the valid operators


def test_unknown_condition_kind_names_its_path(tmp_path: Path) -> None:
    rule = {"any": [{"not": {"propertee": "x"}}]}
    message = error_of(tmp_path, _segments(rule))
    assert "field 'segments[2].rule.any[0].not'" in message
    assert "one of the keys: all, any, not, field, trait, event, not_done" in message


def test_unknown_profile_field_names_its_path(tmp_path: Path) -> None:
    message = error_of(tmp_path, _segments({"field": "lifetime_value", "op": "gt", "value": 3}))
    assert "field 'segments[2].rule.field'" in message


def test_operator_must_fit_the_field(tmp_path: Path) -> None:
    message = error_of(tmp_path, _segments({"field": "revenue", "op": "contains", "value": 3}))
    assert "segments[2].rule" in message
    assert "op 'contains' does not apply to field 'revenue'" in message
    message = error_of(tmp_path, _segments({"field": "stage", "op": "eq", "value": "sleepy"}))
    assert "stage values must be among" in message


def test_extra_key_in_a_condition_is_named(tmp_path: Path) -> None:
    rule = {"event": "Lesson Completed", "count": 3, "within": "7d", "window": "7d"}
    message = error_of(tmp_path, _segments(rule))
    assert "field 'segments[2].rule.window': Extra inputs are not permitted" in message


def test_event_count_windows_are_whole_days(tmp_path: Path) -> None:
    message = error_of(tmp_path, _segments({"event": "X", "count": 1, "within": "36h"}))
    assert "field 'segments[2].rule.within'" in message
    assert "whole number of days" in message


def test_segment_names_are_unique(tmp_path: Path) -> None:
    rule = {"trait": "plan", "op": "exists"}
    message = error_of(tmp_path, {"segments": [{"name": "champions", "rule": rule}]})
    assert "repeated: champions" in message


def test_core_thresholds_are_checked(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"core": {"enter_days": 10, "stay_days": 12}})
    assert "stay_days must not exceed enter_days" in message


def test_condition_trees_parse_into_typed_nodes(tmp_path: Path) -> None:
    rule = {
        "all": [
            {"field": "first_seen_age", "op": "gte", "value": "14d"},
            {"trait": "plan", "op": "exists"},
            {"not": {"event": "Order Completed", "count": 1, "within": "30d"}},
            {"not_done": "Lesson Completed", "within": "3d"},
        ]
    }
    cfg = load_config(write(tmp_path, {"segments": [{"name": "x", "rule": rule}]}))
    root = cfg.segments[0].rule
    assert isinstance(root, AllOf)
    age, trait, negated, not_done = root.all
    assert isinstance(age, FieldCondition)
    assert age.value == timedelta(days=14)
    assert isinstance(trait, TraitCondition)
    assert trait.value is True
    assert isinstance(negated, NotOf)
    assert isinstance(negated.not_, EventCountCondition)
    assert negated.not_.op == "gte"
    assert negated.not_.within == timedelta(days=30)
    assert isinstance(not_done, NotDoneCondition)
    assert cfg.derived.counted_days == {"Order Completed": 30}
    assert cfg.derived.not_done_events == {"Lesson Completed"}
    assert cfg.derived.age_thresholds == (("first_seen_age", timedelta(days=14)),)


def test_config_is_frozen() -> None:
    cfg = SegmenterConfig()
    with pytest.raises(ValueError, match="frozen"):
        cfg.lifecycle.at_risk_after = timedelta(days=1)  # type: ignore[misc]
