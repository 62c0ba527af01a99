"""NPS and feedback answers: the traits they set, latest-wins, invalid scores, segments, rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.segmenter.config import SegmenterConfig, load_config
from services.segmenter.domain.batch import apply_batch
from services.segmenter.domain.decide import NPS_RULE, apply_event, event_input_id
from services.segmenter.domain.state import UserState
from shared import ids
from shared.events import Event
from tests.unit.segmenter.support import day, event, track

OFF = {"rfm": {"enabled": False}, "core": {"enabled": False}}


def apply(*events: Event, cfg: SegmenterConfig | None = None) -> UserState:
    cfg = cfg or SegmenterConfig.model_validate(OFF)
    state: UserState | None = None
    for ev in events:
        state = apply_event(state, ev, cfg, ev.timestamp).state
    assert state is not None
    return state


def nps_traits(state: UserState) -> dict[str, Any]:
    return {k: v for k, v in state.traits.items() if k.startswith("nps_")}


@pytest.mark.parametrize(
    ("score", "category"),
    [(0, "detractor"), (6, "detractor"), (7, "passive"), (8, "passive"), (9, "promoter"), (10, "promoter")],
)
def test_an_answer_sets_score_category_and_time(score: int, category: str) -> None:
    state = apply(track("NPS Submitted", day(0), score=score, comment="ok"))
    assert nps_traits(state) == {"nps_score": score, "nps_category": category, "nps_at": day(0).isoformat()}
    assert state.last_activity_at == day(0)


def test_the_latest_answer_by_event_time_wins_whatever_the_arrival_order() -> None:
    newer = track("NPS Submitted", day(2), score=3)
    older = track("NPS Submitted", day(1), score=10)
    cfg = SegmenterConfig.model_validate(OFF)
    # The older answer arrives late: it must not overwrite the newer one.
    state = apply_event(None, newer, cfg, day(3)).state
    state = apply_event(state, older, cfg, day(3)).state
    assert nps_traits(state) == {"nps_score": 3, "nps_category": "detractor", "nps_at": day(2).isoformat()}
    assert nps_traits(apply(older, newer)) == nps_traits(state)


@pytest.mark.parametrize("bad", [11, -1, 7.5, "NaN", "seven", None, True, [9], {"v": 9}, "inf", " 10 1"])
def test_an_invalid_score_is_ignored_but_the_event_is_activity(bad: Any) -> None:
    state = apply(track("NPS Submitted", day(0), score=8), track("NPS Submitted", day(1), score=bad))
    assert nps_traits(state) == {"nps_score": 8, "nps_category": "passive", "nps_at": day(0).isoformat()}
    assert state.last_activity_at == day(1)


def test_a_missing_score_is_ignored() -> None:
    state = apply(track("NPS Submitted", day(0)))
    assert nps_traits(state) == {}
    assert state.last_activity_at == day(0)


def test_numeric_strings_and_integral_floats_are_scores() -> None:
    assert apply(track("NPS Submitted", day(0), score="9")).traits["nps_score"] == 9
    assert apply(track("NPS Submitted", day(0), score=6.0)).traits["nps_category"] == "detractor"


def test_feedback_is_activity_and_keeps_its_latest_time() -> None:
    state = apply(track("Feedback Submitted", day(2), text="slow"), track("Feedback Submitted", day(1)))
    assert state.traits["feedback_at"] == day(2).isoformat()
    assert state.last_activity_at == day(2)


def test_nps_traits_survive_a_json_round_trip() -> None:
    state = apply(track("NPS Submitted", day(0), score=4))
    assert UserState.from_json(state.to_json()) == state


def test_the_category_is_usable_in_segment_conditions() -> None:
    cfg = SegmenterConfig.model_validate(
        {
            **OFF,
            "segments": [
                {"name": "detractors", "rule": {"trait": "nps_category", "op": "eq", "value": "detractor"}}
            ],
        }
    )
    state = apply(track("NPS Submitted", day(0), score=2), cfg=cfg)
    assert "detractors" in state.segments
    state = apply_event(state, track("NPS Submitted", day(1), score=9), cfg, day(1)).state
    assert "detractors" not in state.segments


def test_the_shipped_config_has_a_detractors_segment() -> None:
    cfg = load_config(Path(__file__).parents[3] / "config" / "segmenter.yaml")
    state = apply(track("NPS Submitted", day(0), score=5), cfg=cfg)
    assert "detractors" in state.segments


def test_a_batch_records_each_valid_answer_with_a_deterministic_id() -> None:
    cfg = SegmenterConfig.model_validate(OFF)
    good = track("NPS Submitted", day(0), score=7)
    bad = track("NPS Submitted", day(0, hours=1), score="NaN")
    inputs = [(e, event_input_id(e)) for e in (good, bad)]
    result = apply_batch({"u1": None}, {}, inputs, cfg, day(0, hours=1))
    assert [(r.user_id, r.event_id, r.score, r.at) for r in result.nps] == [
        ("u1", ids.output_id(event_input_id(good), NPS_RULE), 7, day(0))
    ]


def test_a_merge_moves_the_batchs_answers_and_keeps_the_latest_answer_whole() -> None:
    cfg = SegmenterConfig.model_validate(OFF)
    anon_answer = event(
        "track", day(1), None, anonymous="anon-1", name="NPS Submitted", properties={"score": 10}
    )
    user_answer = track("NPS Submitted", day(0), user="u1", score=3)
    link = event("identify", day(2), "u1", anonymous="anon-1")
    inputs = [(e, event_input_id(e)) for e in (user_answer, anon_answer, link)]
    result = apply_batch({"u1": None, "anon-1": None}, {}, inputs, cfg, day(2))
    assert result.merges == [("anon-1", "u1")]
    assert sorted((r.user_id, r.score) for r in result.nps) == [("u1", 3), ("u1", 10)]
    merged = result.states["u1"]
    assert merged is not None
    assert nps_traits(merged) == {"nps_score": 10, "nps_category": "promoter", "nps_at": day(1).isoformat()}
