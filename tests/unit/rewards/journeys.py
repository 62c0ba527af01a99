"""Random multi-user journeys through the example config: every kind of input, in time order."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from services.rewards.domain.inputs import RewardsInput
from services.rewards.domain.simulate import Replay
from tests.unit.rewards.support import T0, command, reserve, stage, track

USERS = ("ann", "ben", "cat")
ZONES = ("UTC", "America/New_York", "Europe/Berlin")

STEPS = st.one_of(
    st.tuples(st.just("lesson"), st.sampled_from(USERS), st.integers(0, 3), st.sampled_from(ZONES)),
    st.tuples(
        st.just("order"), st.sampled_from(USERS), st.integers(0, 1), st.sampled_from([5, 19.99, 300, 2500])
    ),
    st.tuples(st.just("refund"), st.sampled_from(USERS), st.integers(0, 1), st.none()),
    st.tuples(st.just("checkin"), st.sampled_from(USERS), st.integers(0, 3), st.sampled_from(ZONES)),
    st.tuples(
        st.just("stage"),
        st.sampled_from(USERS),
        st.integers(0, 3),
        st.sampled_from(["activated", "reactivated", "at_risk"]),
    ),
    st.tuples(st.just("signup"), st.sampled_from(USERS), st.integers(0, 3), st.sampled_from(USERS)),
    st.tuples(st.just("redeem"), st.sampled_from(USERS), st.integers(0, 1), st.integers(1, 400)),
)
JOURNEYS = st.lists(st.tuples(st.integers(1, 60 * 24), STEPS), max_size=40)
"""(minutes since the previous step, step) pairs."""


def play(
    replay: Replay,
    journey: list[tuple[int, tuple[str, str, int, Any]]],
    *,
    start: datetime = T0,
    prefix: str = "j",
) -> None:
    """Feed the journey to `replay` from `start`; redemptions are confirmed or released right
    away. Message ids are `prefix` + the step's index, so the same journey gives the same ids."""
    at = start
    for i, (gap, (kind, user, n, extra)) in enumerate(journey):
        at += timedelta(minutes=gap)
        mid = f"{prefix}{i}"
        inp: RewardsInput
        if kind == "lesson":
            inp = track("Lesson Completed", at, user, traits={"timezone": extra}, message_id=mid)
        elif kind == "order":
            inp = track("Order Completed", at, user, revenue=extra, order_id=f"{user}-{n}", message_id=mid)
        elif kind == "refund":
            inp = track("Order Refunded", at, user, order_id=f"{user}-{n}", message_id=mid)
        elif kind == "checkin":
            inp = track("Checked In", at, user, traits={"timezone": extra}, message_id=mid)
        elif kind == "stage":
            inp = stage(extra, at, user, activated=True, message_id=mid)
        elif kind == "signup":
            inp = track("Signed Up", at, user, referrer_id=extra, message_id=mid)
        else:
            decision = replay.feed(reserve(extra, at, user, key=mid))
            if decision.hold_id is not None and decision.refused is None:
                action = "confirm" if n else "release"
                replay.feed(command(action, decision.hold_id, at + timedelta(seconds=1), user, key=f"{mid}c"))
            continue
        replay.feed(inp)
