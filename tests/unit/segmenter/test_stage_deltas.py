"""Users per stage kept as deltas: what one unit of work adds to and takes from each stage."""

from __future__ import annotations

from datetime import UTC, datetime

from services.segmenter.adapters.store import ProfileRow
from services.segmenter.consumer import stage_deltas

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def saved(user_id: str, stage: str) -> ProfileRow:
    return ProfileRow(user_id, b"{}", stage, False, NOW, None)


def test_a_first_seen_user_counts_once_saved_and_a_stage_change_moves_one_user() -> None:
    deltas = stage_deltas(
        {"ann": "active", "bob": "at_risk"},
        {"new-1"},
        [saved("new-1", "new"), saved("ann", "at_risk"), saved("bob", "at_risk")],
        [],
    )
    assert {k: v for k, v in deltas.items() if v} == {"new": 1, "active": -1, "at_risk": 1}


def test_a_merged_profile_stops_counting_and_a_placeholder_never_saved_never_counts() -> None:
    deltas = stage_deltas(
        {"anon-1": "new", "u1": "active"},
        {"anon-2"},
        [saved("u1", "active")],
        [("anon-1", "u1")],
    )
    assert {k: v for k, v in deltas.items() if v} == {"new": -1}


def test_a_profile_merged_earlier_is_not_counted_again_when_its_row_is_written() -> None:
    # "old-anon" was merged by an earlier batch: locked, but not among the counted stages.
    assert not any(stage_deltas({}, set(), [saved("old-anon", "active")], []).values())


def test_a_profile_created_and_merged_in_the_same_batch_never_counts() -> None:
    deltas = stage_deltas({"u1": "new"}, {"anon-1"}, [saved("u1", "activated")], [("anon-1", "u1")])
    assert {k: v for k, v in deltas.items() if v} == {"new": -1, "activated": 1}
