"""A deterministic event workload whose stage deadlines all lie far from the wall clock.

Every timestamp sits at `anchor - (whole days + 12 h + up to 1 h)`, so each idle deadline
(a whole number of days after an event) falls about half a day away from any run's `now`:
runs a few minutes apart compute the same stages.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.integration.segmenter.harness import wire_event

NAMES = ["Lesson Completed", "Page Viewed", "Order Completed", "Signed Up", "Video Played"]


def workload(users: int, events: int, seed: int = 7, anchor: datetime | None = None) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    anchor = (anchor or datetime.now(UTC)).replace(microsecond=0)
    out: list[dict[str, Any]] = []
    for i in range(events):
        user = f"user-{rng.randrange(users):05d}"
        ago = timedelta(days=rng.randrange(0, 120), hours=12, seconds=rng.randrange(3600))
        ts = anchor - ago
        kind = rng.random()
        mid = f"m-{seed}-{i}"
        if kind < 0.08:
            out.append(
                wire_event(
                    user,
                    None,
                    ts,
                    mid=mid,
                    etype="identify",
                    traits={"plan": rng.choice(["free", "pro"]), "timezone": "Europe/Paris"},
                )
            )
        elif kind < 0.25:
            out.append(wire_event(user, None, ts, mid=mid, etype="page", name="Home"))
        else:
            name = rng.choice(NAMES)
            props = {"revenue": rng.randrange(5, 400)} if name == "Order Completed" else {}
            out.append(wire_event(user, name, ts, mid=mid, properties=props))
    return out
