"""The dead-letter breaker: a pure window over recent outcomes."""

from __future__ import annotations

from shared.runtime.dlq_policy import BreakerSettings, DeadLetterBreaker


def feed(breaker: DeadLetterBreaker, outcomes: str) -> str | None:
    """Feed `outcomes` ("d" dead-lettered, "." applied); the first trip reason, if any."""
    for o in outcomes:
        breaker.record(dead=o == "d")
        if breaker.tripped:
            return breaker.tripped
    return None


def test_does_not_trip_before_min_messages_however_bad() -> None:
    breaker = DeadLetterBreaker(BreakerSettings(max_ratio=0.5, window=100, min_messages=10))
    assert feed(breaker, "d" * 9) is None
    assert feed(breaker, "d") is not None


def test_trips_on_more_than_the_ratio_of_the_window_only() -> None:
    breaker = DeadLetterBreaker(BreakerSettings(max_ratio=0.5, window=10, min_messages=10))
    assert feed(breaker, ".d" * 5) is None  # exactly half: not more than
    why = feed(breaker, "d")  # the window slides: 6 of the last 10
    assert why is not None
    assert "6 of the last 10" in why


def test_old_dead_letters_leave_the_window() -> None:
    breaker = DeadLetterBreaker(BreakerSettings(max_ratio=0.5, window=10, min_messages=5))
    assert feed(breaker, "dd...") is None
    assert feed(breaker, "." * 20 + "dddd" + "......") is None  # 4 of the last 10


def test_trips_on_a_long_run_in_a_row_even_below_the_ratio() -> None:
    breaker = DeadLetterBreaker(
        BreakerSettings(max_ratio=1.0, window=1000, min_messages=1000, max_consecutive=5)
    )
    assert feed(breaker, "ddddd.ddddd") is None
    why = feed(breaker, "d")
    assert why is not None
    assert "in a row" in why


def test_defaults_are_the_documented_ones() -> None:
    s = DeadLetterBreaker().settings
    assert (s.max_ratio, s.window, s.min_messages, s.max_consecutive) == (0.5, 1000, 100, 1000)
