"""Activity runs (the facts behind `reactivated`) and the state's JSON round trip."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.decide import apply_event
from services.segmenter.domain.facts import insert_activity, merge_runs
from services.segmenter.domain.state import UserState
from shared.events import Event
from tests.unit.segmenter.histories import histories
from tests.unit.segmenter.support import T0

GAP = timedelta(days=30)


def runs_of(instants: list[datetime], max_runs: int = 32) -> tuple[list[list[datetime]], object]:
    runs: list[list[datetime]] = []
    pruned = None
    for at in instants:
        pruned = insert_activity(runs, pruned, at, GAP, max_runs)
    return runs, pruned


def days(*offsets: float) -> list[datetime]:
    return [T0 + timedelta(days=d) for d in offsets]


def test_runs_split_at_gaps_of_the_threshold() -> None:
    runs, pruned = runs_of(days(0, 10, 39, 70, 71, 101))
    assert runs == [days(0, 39), days(70, 71), days(101, 101)]
    assert pruned is None


def test_a_late_instant_bridges_two_runs() -> None:
    runs, _ = runs_of(days(0, 40, 20))
    assert runs == [days(0, 40)]


def test_old_runs_fold_away_beyond_the_limit() -> None:
    runs, pruned = runs_of(days(0, 40, 80, 120), max_runs=2)
    assert runs == [days(80, 80), days(120, 120)]
    assert pruned == days(40)[0]
    # an instant inside folded history changes nothing; one that continues it folds in too
    runs, pruned = runs_of(days(0, 40, 80, 120, 10, 60), max_runs=2)
    assert runs == [days(120, 120)]
    assert pruned == days(80)[0]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 400 * 24), min_size=1, max_size=40), st.randoms())
def test_runs_do_not_depend_on_insertion_order(hours: list[int], rnd: object) -> None:
    instants = [T0 + timedelta(hours=h) for h in hours]
    shuffled = list(instants)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert runs_of(instants, 64) == runs_of(shuffled, 64)
    split = len(instants) // 2
    left, _ = runs_of(instants[:split], 64)
    right, _ = runs_of(instants[split:], 64)
    assert merge_runs(left + right, None, GAP, 64) == runs_of(instants, 64)


@settings(max_examples=100, deadline=None)
@given(histories())
def test_json_round_trip_of_any_history(events: list[Event]) -> None:
    cfg = SegmenterConfig()
    state: UserState | None = None
    for ev in events:
        state = apply_event(state, ev, cfg, ev.timestamp).state
    assert state is not None
    again = UserState.from_json(state.to_json())
    assert again == state
    assert again.copy() == state
