"""A hypothesis strategy of event histories whose gaps land on and around the lifecycle
thresholds, shared by the segmenter property tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from shared.events import Event
from tests.unit.segmenter.support import T0, event

# gaps that hit the thresholds exactly, and some that straddle them
GAPS = [timedelta(0), timedelta(hours=1), *(timedelta(days=d) for d in (1, 6, 7, 8, 29, 30, 31, 89, 90, 95))]
KINDS = ["page", "lesson", "order", "passive", "identify", "signup", "screen"]
USERS = ["a", "b", "c"]


def make(kind: str, at: datetime, user: str, n: int) -> Event:
    mid = f"m{n}"
    if kind == "page":
        return event("page", at, user, message_id=mid)
    if kind == "screen":
        return event("screen", at, user, message_id=mid, name="Home")
    if kind == "identify":
        return event("identify", at, user, message_id=mid, traits={"plan": f"p{n % 3}"})
    name = {"lesson": "Lesson Completed", "order": "Order Completed", "passive": "Push Received",
            "signup": "Signed Up"}[kind]  # fmt: skip
    props = {"revenue": 10 + n} if kind == "order" else {}
    return event("track", at, user, name=name, message_id=mid, properties=props)


@st.composite
def histories(draw: Any, users: list[str] = USERS[:1], max_size: int = 20) -> list[Event]:
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(GAPS),
                st.integers(0, 3600 * 6),  # jitter in seconds, so instants rarely coincide
                st.sampled_from(KINDS),
                st.sampled_from(users),
            ),
            min_size=1,
            max_size=max_size,
        )
    )
    at = T0
    out = []
    for n, (gap, jitter, kind, user) in enumerate(steps):
        at = at + gap + timedelta(seconds=jitter)
        out.append(make(kind, at, user, n))
    return out
