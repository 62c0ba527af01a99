"""The restart policy of `userops dev run`: exponential, jittered, capped, reset by a healthy run."""

from __future__ import annotations

import pytest

from scripts.stack.restart import RestartPolicy, RestartState

POLICY = RestartPolicy(initial=0.5, maximum=8.0, multiplier=2.0, jitter=0.2, healthy_after=60.0)


def test_delay_doubles_per_crash_in_a_streak_up_to_the_maximum() -> None:
    middle = [POLICY.delay(streak, rand=0.5) for streak in range(1, 8)]
    assert middle == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_jitter_spreads_the_delay_both_ways_within_its_fraction() -> None:
    assert POLICY.delay(3, rand=0.0) == pytest.approx(2.0 * 0.8)
    assert POLICY.delay(3, rand=0.999999) == pytest.approx(2.0 * 1.2, rel=1e-5)
    assert POLICY.delay(3, rand=0.25) < POLICY.delay(3, rand=0.75)


def test_a_very_long_streak_does_not_overflow() -> None:
    assert POLICY.delay(10_000, rand=0.5) == 8.0


def test_a_healthy_run_resets_the_streak_but_not_the_restart_count() -> None:
    state = RestartState()
    delays = [state.schedule(POLICY, now=float(i), ran_for=1.0, rand=0.5) for i in range(4)]
    assert delays == [0.5, 1.0, 2.0, 4.0]
    assert (state.restarts, state.streak) == (4, 4)
    delay = state.schedule(POLICY, now=100.0, ran_for=60.0, rand=0.5)
    assert delay == 0.5
    assert (state.restarts, state.streak) == (5, 1)


def test_a_restart_is_due_only_once_its_delay_has_passed() -> None:
    state = RestartState()
    state.schedule(POLICY, now=10.0, ran_for=0.1, rand=0.5)
    assert not state.due(10.4)
    assert state.due(10.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0},
        {"initial": 5, "maximum": 1},
        {"multiplier": 0.5},
        {"jitter": 1.0},
        {"healthy_after": 0},
    ],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="need"):
        RestartPolicy(**kwargs)
