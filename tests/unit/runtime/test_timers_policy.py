"""When a failing timer is offered again, when it is dead, and what a handler arms while firing: pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.ids import timer_input_id
from shared.runtime import timer_store
from shared.runtime.errors import PermanentError
from shared.runtime.timers import Timer, retry_delay


def test_a_failing_timer_backs_off_exponentially_with_jitter_up_to_the_cap() -> None:
    for attempts, low, high in [(1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (20, 30.0, 60.0)]:
        delays = {retry_delay(attempts, ValueError("bug"), 50, 1.0, 60.0) for _ in range(100)}
        assert all(d is not None and low <= d <= high for d in delays), (attempts, delays)
        assert len(delays) > 1


def test_a_timer_is_dead_at_its_last_attempt_or_on_a_permanent_error() -> None:
    assert retry_delay(4, ValueError("bug"), 5, 1.0, 60.0) is not None
    assert retry_delay(5, ValueError("bug"), 5, 1.0, 60.0) is None
    assert retry_delay(1, PermanentError("no such user"), 5, 1.0, 60.0) is None


def test_a_timer_firing_id_is_the_shared_timer_input_id() -> None:
    due = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert Timer("idle", "u1", due).id == timer_input_id("idle", "u1", due)
    assert Timer("idle", "u1", due).id != Timer("idle", "u1", due + timedelta(microseconds=1)).id
    assert Timer("idle", "u1", due).id != Timer("idle", "u2", due).id


class _RecordingSession:
    """Just enough of an AsyncSession for `schedule`/`cancel`: `info` and the statements sent."""

    def __init__(self, info: dict[str, object]) -> None:
        self.info = info
        self.sent: list[dict[str, object]] = []

    async def execute(self, _: object, params: dict[str, object]) -> None:
        self.sent.append(params)


async def test_arming_and_cancelling_inside_a_firing_are_noted_for_the_worker() -> None:
    due = datetime(2026, 1, 1, 12, tzinfo=UTC)
    armed: dict[tuple[str, str], datetime | None] = {}
    session = _RecordingSession({timer_store.ARMED: armed})
    await timer_store.schedule(session, [Timer("idle", "u1", due), Timer("idle", "u2", due)])  # type: ignore[arg-type]
    await timer_store.cancel(session, "idle", ["u2", "u3"])  # type: ignore[arg-type]
    # The worker puts back no unhandled timer the handler armed or cancelled: its word wins.
    assert armed == {("idle", "u1"): due, ("idle", "u2"): None, ("idle", "u3"): None}
    assert len(session.sent) == 2


async def test_arming_outside_a_firing_leaves_the_session_alone() -> None:
    session = _RecordingSession({})
    await timer_store.schedule(session, [Timer("idle", "u1", datetime(2026, 1, 1, tzinfo=UTC))])  # type: ignore[arg-type]
    await timer_store.cancel(session, "idle", ["u1"])  # type: ignore[arg-type]
    assert session.info == {}
    assert session.sent[0]["keys"] == ["u1"]
