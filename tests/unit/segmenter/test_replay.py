"""Replay over recorded events with a simulated clock, and the NDJSON reader."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.replay import read_ndjson, replay
from tests.unit.segmenter.support import Journey, day, event, identify, page, track

CFG = SegmenterConfig()


def test_replay_matches_the_live_journey() -> None:
    events = [
        identify(day(0), user="a"),
        track("Order Completed", day(1), user="a", revenue=80),
        page(day(2), user="b"),
        page(day(3), user="a"),
        page(day(50), user="b"),
        page(day(120), user="a"),
    ]
    result = replay(reversed(events), CFG, until=day(130), keep_history=True)
    for user in ("a", "b"):
        j = Journey(CFG)
        for ev in events:
            if ev.user_id == user:
                j.send(ev)
        j.advance(day(130))
        assert j.state is not None
        assert result.states[user].stage == j.stage
        assert [h for h in result.history if h.user_id == user] == j.history
        assert result.states[user].segments == j.state.segments
    assert result.stages == {"at_risk": 1, "dormant": 1}
    assert result.transitions[("churned", "reactivated")] == 1  # a: day 3, then day 120
    assert result.transitions[("dormant", "reactivated")] == 1  # b: day 2, then day 50
    assert result.transitions[(None, "new")] == 2
    assert result.events_applied == 6
    assert result.timers_fired > 0


def test_replay_merges_aliased_profiles() -> None:
    events = [
        event("page", day(0), None, anonymous="anon-7"),
        event("track", day(1), None, anonymous="anon-7", name="Order Completed",
              properties={"revenue": 5}),
        event("alias", day(2), "u7", previous_id="anon-7"),
        event("page", day(3), None, anonymous="anon-7"),  # logged out again: still u7
    ]  # fmt: skip
    result = replay(events, CFG, until=day(4))
    assert set(result.states) == {"u7"}
    assert result.links == {"anon-7": "u7"}
    state = result.states["u7"]
    assert state.orders == 1
    assert state.first_seen == day(0)
    assert state.last_seen == day(3)
    assert state.activated
    assert state.stage == "activated"


def test_until_fires_timers_but_not_beyond() -> None:
    events = [page(day(0))]
    assert replay(events, CFG, until=day(6)).states["u1"].stage == "new"
    assert replay(events, CFG, until=day(7)).states["u1"].stage == "at_risk"
    assert replay(events, CFG).states["u1"].stage == "new"


def test_read_ndjson(tmp_path: Path) -> None:
    wire = [page(day(n)).raw for n in range(3)]
    body = b"\n".join(orjson.dumps(w) for w in wire) + b"\n\n"
    plain = tmp_path / "events.ndjson"
    plain.write_bytes(body)
    packed = tmp_path / "events.ndjson.gz"
    packed.write_bytes(gzip.compress(body))
    for path in (plain, packed):
        events = list(read_ndjson(path))
        assert [e.timestamp for e in events] == [day(n) for n in range(3)]
    assert replay(read_ndjson(plain), CFG).states["u1"].stage == "new"


def test_read_ndjson_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    path.write_bytes(orjson.dumps(page(day(0)).raw) + b'\n{"type": "page"}\n')
    with pytest.raises(ValueError, match=r"events.ndjson:2: messageId: is required"):
        list(read_ndjson(path))
