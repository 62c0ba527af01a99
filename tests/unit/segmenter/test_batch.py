"""The one batch decision: merges carry the batch's own rows, amounts stay finite, states round-trip."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.batch import BatchResult, anonymous_ids, apply_batch, involved_profiles
from services.segmenter.domain.decide import event_input_id
from services.segmenter.domain.facts import MAX_TOTAL, order_amount
from services.segmenter.domain.state import UserState, day_date, epoch_day
from shared.events import Event
from tests.unit.segmenter.support import day, event, track

CFG = SegmenterConfig.model_validate(
    {
        "activation": {"any_of": [{"event": "Order Completed"}]},
        "segments": [{"name": "buyers", "rule": {"field": "revenue", "op": "gte", "value": 1}}],
    }
)


def run(events: list[Event], now: datetime, states: dict[str, UserState | None] | None = None) -> BatchResult:
    links: dict[str, str] = {}
    involved = involved_profiles(events, links)
    given_states = {p: (states or {}).get(p) for p in involved}
    return apply_batch(given_states, links, [(e, event_input_id(e)) for e in events], CFG, now)


def test_a_merge_moves_the_rows_the_same_batch_wrote_for_the_anonymous_profile() -> None:
    """Defect 10: one batch with an anonymous page view, then the identify that links it."""
    visit = event("page", day(0), None, anonymous="anon-1")
    signup = event("identify", day(0, hours=1), "u1", anonymous="anon-1")
    result = run([visit, signup], now=day(0, hours=1))
    assert result.merges == [("anon-1", "u1")]
    assert result.links == [("anon-1", "u1")]
    assert [(h.user_id, h.from_stage, h.to_stage) for h in result.history] == [("u1", None, "new")]
    assert result.days() == [("u1", day_date(epoch_day(day(0))))]
    assert result.states["anon-1"] is None
    assert result.timers["anon-1"] is None
    assert "anon-1" not in result.touched
    # The lifecycle event was announced under the id the profile had when it happened.
    assert [(p, o.type) for p, o in result.outputs] == [("anon-1", "stage_changed")]


def test_a_merge_drops_the_anonymous_profiles_pending_segment_membership() -> None:
    order = event("track", day(0), None, anonymous="anon-2", name="Order Completed",
                  properties={"revenue": 5})  # fmt: skip
    alias = event("alias", day(0, hours=1), "u2", previous_id="anon-2")
    result = run([order, alias], now=day(0, hours=1))
    entered, exited = result.membership()
    assert ("anon-2", "buyers") not in {(p, s) for p, s, _ in entered}
    assert not exited
    assert {p for p, _ in result.days()} == {"u2"}
    assert result.states["u2"] is not None and result.states["u2"].orders == 1


def test_a_chain_of_merges_in_one_batch_ends_at_the_last_user() -> None:
    events = [
        event("page", day(0), None, anonymous="a"),
        event("identify", day(0, hours=1), "b", anonymous="a"),
        event("alias", day(0, hours=2), "c", previous_id="b"),
    ]
    result = run(events, now=day(0, hours=2))
    assert result.merges == [("a", "b"), ("b", "c")]
    assert {h.user_id for h in result.history} == {"c"}
    assert {p for p, _ in result.days()} == {"c"}


def test_the_same_message_id_from_two_users_is_two_inputs() -> None:
    """Defect 3: both users' history rows and lifecycle events survive, with distinct ids."""
    events = [event("page", day(0), "alice", message_id="signup-1"),
              event("page", day(0), "bob", message_id="signup-1")]  # fmt: skip
    result = run(events, now=day(0))
    assert {h.user_id for h in result.history} == {"alice", "bob"}
    ids = [o.id for _, o in result.outputs] + [h.event_id for h in result.history]
    assert len({o.id for _, o in result.outputs}) == len(result.outputs) == 2
    assert len(set(ids)) == 2  # a history row shares its stage_changed event's id, nothing else


def test_order_amounts_must_be_finite_and_bounded() -> None:
    for good, expected in ((12, 12.0), (12.5, 12.5), ("7.25", 7.25), (-3, -3.0), (1e15, 1e15)):
        assert order_amount(good) == expected
    for bad in ("NaN", "nan", "inf", "-Infinity", 1e308, -1e16, float("nan"), float("inf"), True, None,
                "12 EUR", 10**400, [1], {"v": 1}):  # fmt: skip
        assert order_amount(bad) is None, bad


def test_non_finite_revenue_is_ignored_and_the_user_keeps_working() -> None:
    """Defect 2: `1e308` twice or `"NaN"` no longer poisons the user's sums or stored state."""
    events = [
        track("Order Completed", day(0), user="u9", revenue=1e308),
        track("Order Completed", day(0, hours=1), user="u9", revenue=1e308),
        track("Order Completed", day(0, hours=2), user="u9", revenue="NaN"),
        track("Order Completed", day(0, hours=3), user="u9", revenue="inf"),
        track("Order Completed", day(0, hours=4), user="u9", revenue=40),
    ]
    result = run(events, now=day(0, hours=4))
    state = result.states["u9"]
    assert state is not None
    assert (state.orders, state.revenue, result.amounts_rejected) == (5, 40.0, 4)
    assert all(math.isfinite(amount) for _, amount in state.order_days.values())
    stored = UserState.from_json(state.to_json())
    assert stored == state
    # The next order after a trip through the store works (it raised TypeError before).
    later = run([track("Order Completed", day(1), user="u9", revenue=2)], now=day(1), states={"u9": stored})
    assert later.states["u9"] is not None and later.states["u9"].revenue == 42.0


def test_sums_saturate_instead_of_overflowing() -> None:
    events = [track("Order Completed", day(0, hours=n), user="rich", revenue=1e15) for n in range(3)]
    state = run(events, now=day(0, hours=3)).states["rich"]
    assert state is not None
    state.revenue = MAX_TOTAL - 1e15
    more = run(
        [track("Order Completed", day(1), user="rich", revenue=1e15)] * 1, now=day(1), states={"rich": state}
    )
    assert more.states["rich"] is not None and more.states["rich"].revenue == MAX_TOTAL


# -- any state the domain can produce survives the store's encoding --------------------------------


def through_jsonb(doc: bytes) -> bytes:
    """`doc` as PostgreSQL's jsonb gives it back: every number keeps its decimal digits and scale
    but loses its exponent (`1.5e+18` → `1500000000000000000`, `1e-07` → `0.0000001`).
    `test_batches.py` checks the premise on a real column."""

    def render(v: Any) -> str:
        if isinstance(v, dict):
            return "{" + ",".join(f"{json.dumps(k)}:{render(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ",".join(render(x) for x in v) + "]"
        if isinstance(v, Decimal):
            return format(v, "f")
        return json.dumps(v)

    return render(json.loads(doc, parse_float=Decimal)).encode()


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__


def test_the_jsonb_model_reproduces_what_postgresql_does_to_numbers() -> None:
    doc = orjson.dumps({"a": 1.5e18, "b": 1e-07, "c": 5.0, "d": 2**63 + 5, "e": 1e300, "f": -0.0})
    assert orjson.loads(through_jsonb(doc)) == {
        "a": 1500000000000000000, "b": 1e-07, "c": 5.0, "d": 2**63 + 5, "e": 1e300, "f": -0.0
    }  # fmt: skip
    assert isinstance(orjson.loads(through_jsonb(doc))["a"], int)


IDS = st.text(alphabet=st.characters(codec="utf-8", blacklist_characters="\x00"), min_size=1, max_size=12)
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from(["NaN", "inf", "-inf", "1e308", "12.5", "-0", "0x10", "", " 7 "]),
    st.sampled_from([1e15, -1e15, 1e15 + 1, 5e-324, -0.0, 2**53 + 1, 1e16, 123456789012345678]),
)
TRAITS = st.dictionaries(IDS, st.one_of(NUMBERS, IDS, st.booleans(), st.none()), max_size=3)
INSTANTS = st.one_of(
    st.datetimes(datetime(2000, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC)),
    st.sampled_from(
        [datetime(1970, 1, 1, tzinfo=UTC), datetime(2999, 12, 31, 23, 59, tzinfo=UTC)]  # the contract edges
    ),
)
NOW = datetime(2024, 6, 1, tzinfo=UTC)


@st.composite
def wire_events(draw: Any) -> list[dict[str, Any]]:
    people = draw(st.lists(IDS, min_size=1, max_size=3, unique=True))
    out = []
    for n in range(draw(st.integers(1, 12))):
        who = draw(st.sampled_from(people))
        kind = draw(st.sampled_from(["order", "page", "identify", "alias", "anonymous"]))
        ts = draw(INSTANTS).isoformat()
        body: dict[str, Any] = {"messageId": f"m{n}", "timestamp": ts, "receivedAt": ts, "userId": who}
        if kind == "order":
            body |= {"type": "track", "event": "Order Completed", "properties": {"revenue": draw(NUMBERS)}}
        elif kind == "page":
            body |= {"type": "page", "properties": {"revenue": draw(NUMBERS)}}
        elif kind == "identify":
            body |= {"type": "identify", "traits": draw(TRAITS), "anonymousId": draw(IDS)}
        elif kind == "alias":
            body |= {"type": "alias", "previousId": draw(st.sampled_from(people))}
        else:
            body |= {"type": "page", "userId": None, "anonymousId": draw(IDS)}
        out.append(body)
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(wire_events(), min_size=1, max_size=3))
def test_every_state_the_domain_produces_round_trips_through_the_store_encoding(
    batches: list[list[dict[str, Any]]],
) -> None:
    states: dict[str, UserState | None] = {}
    links: dict[str, str] = {}
    for wire in batches:
        events = [Event.from_bytes(orjson.dumps(w)) for w in wire]  # as ingest writes, as we read
        known = {a: links[a] for a in anonymous_ids(events) if a in links}
        given_states = {p: states.get(p) for p in involved_profiles(events, known)}
        result = apply_batch(given_states, known, [(e, event_input_id(e)) for e in events], CFG, NOW)
        links.update(result.links)
        for profile, state in result.states.items():
            if state is None:
                states.pop(profile, None)
                continue
            assert math.isfinite(state.revenue) and abs(state.revenue) <= MAX_TOTAL
            stored = orjson.dumps(state.to_dict(), option=orjson.OPT_NON_STR_KEYS)  # what the store writes
            back = UserState.from_dict(orjson.loads(stored))
            assert back == state
            assert orjson.dumps(back.to_dict(), option=orjson.OPT_NON_STR_KEYS) == stored
            from_column = UserState.from_dict(orjson.loads(through_jsonb(stored)))  # what it reads
            assert from_column == state
            assert _types(from_column.traits) == _types(state.traits)
            states[profile] = from_column  # the next batch starts from the stored form, like the service


def test_a_state_written_with_a_null_sum_by_an_older_version_still_loads() -> None:
    state = run([track("Order Completed", day(0), user="old", revenue=3)], now=day(0)).states["old"]
    assert state is not None
    stored = state.to_dict()
    stored["revenue"] = None  # what NaN/inf became in the JSON of earlier versions
    stored["orderDays"] = {k: [n, None] for k, (n, _) in stored["orderDays"].items()}
    back = UserState.from_dict(orjson.loads(orjson.dumps(stored, option=orjson.OPT_NON_STR_KEYS)))
    assert back.revenue == 0.0
    assert all(amount == 0.0 for _, amount in back.order_days.values())
