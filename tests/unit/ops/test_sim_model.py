"""The simulator's model: deterministic per seed, valid for ingest, and what the configs react to."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scripts.sim.model import SimSpec, Simulation, simulate
from scripts.sim.winback import winback_treatment
from services.segmenter.config import SegmenterConfig
from services.segmenter.domain.replay import replay
from shared.config import load_yaml
from shared.events import Event, parse_ts

REPO = Path(__file__).resolve().parents[3]
START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

specs = st.builds(
    SimSpec,
    seed=st.integers(0, 2**32),
    users=st.integers(1, 12),
    weeks=st.integers(1, 16),
    start=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
)
fast = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _wire(sim: Simulation) -> bytes:
    return b"\n".join(orjson.dumps(e) for e in sim.events)


@fast
@given(specs)
def test_the_same_spec_gives_the_same_stream_byte_for_byte(spec: SimSpec) -> None:
    assert _wire(simulate(spec)) == _wire(simulate(spec))


def test_another_seed_gives_another_stream_with_other_ids() -> None:
    a, b = simulate(SimSpec(1, 30, 4, START)), simulate(SimSpec(2, 30, 4, START))
    assert _wire(a) != _wire(b)
    assert not {u.user_id for u in a.users} & {u.user_id for u in b.users}
    assert not {e["messageId"] for e in a.events} & {e["messageId"] for e in b.events}


@fast
@given(specs)
def test_every_event_is_valid_for_ingest_and_inside_the_simulated_weeks(spec: SimSpec) -> None:
    sim = simulate(spec)
    ids = set()
    for raw in sim.events:
        event = Event.from_wire(orjson.loads(orjson.dumps(raw)))  # the topic contract, limits included
        assert len(orjson.dumps(raw)) < 32_768
        assert spec.start - timedelta(hours=1) <= event.timestamp < spec.end
        ids.add(event.message_id)
    assert len(ids) == len(sim.events)  # messageIds unique: ingest's dedupe drops nothing


@fast
@given(specs)
def test_timestamps_are_ordered_overall_and_per_user(spec: SimSpec) -> None:
    sim = simulate(spec)
    stamps = [parse_ts(e["timestamp"], "timestamp") for e in sim.events]
    assert stamps == sorted(stamps)
    last: dict[str, datetime] = {}
    for e, at in zip(sim.events, stamps, strict=True):
        key = e.get("userId") or e["anonymousId"]
        assert last.get(key, at) <= at
        last[key] = at


@fast
@given(specs)
def test_referrals_name_a_user_who_signed_up_earlier_never_themselves(spec: SimSpec) -> None:
    sim = simulate(spec)
    signed_up: set[str] = set()
    for e in sim.events:
        if e.get("event") == "Signed Up":
            referrer = e["properties"].get("referrer_id")
            if referrer is not None:
                assert referrer in signed_up and referrer != e["userId"]
            signed_up.add(e["userId"])
    assert signed_up <= {u.user_id for u in sim.users}


@fast
@given(specs)
def test_orders_carry_revenue_refunds_match_an_order_and_nps_scores_are_0_to_10(spec: SimSpec) -> None:
    orders: dict[str, float] = {}
    for e in simulate(spec).events:
        props = e.get("properties", {})
        if e.get("event") == "Order Completed":
            assert isinstance(props["revenue"], float) and props["revenue"] > 0
            orders[props["order_id"]] = props["revenue"]
        elif e.get("event") == "Order Refunded":
            assert props["order_id"] in orders
        elif e.get("event") == "NPS Submitted":
            assert props["score"] in range(11)


@pytest.fixture(scope="module")
def product() -> tuple[SimSpec, Simulation]:
    spec = SimSpec(7, 250, 16, START)
    return spec, simulate(spec, winback_treatment(REPO / "config" / "notifier.yaml"))


def test_the_stream_has_every_event_the_shipped_configs_react_to(product: tuple[SimSpec, Simulation]) -> None:
    _, sim = product
    names = Counter(e.get("event") or e["type"] for e in sim.events)
    for name in (
        "Signed Up",  # signup, referrals, welcome, activation_nudge
        "Lesson Completed",  # activation, lesson_completed rule, engaged_learners
        "Order Completed",  # activation, purchase rule, RFM
        "Order Refunded",  # purchase reversal
        "Checked In",  # streaks, week_streak badge
        "NPS Submitted",  # NPS traits, detractors, detractor_followup
        "Feedback Submitted",
        "identify",
        "page",
        "screen",
    ):
        assert names[name] > 0, name
    assert any("referrer_id" in e.get("properties", {}) for e in sim.events)
    comments = [e["properties"].get("comment", "") for e in sim.events if e.get("event") == "NPS Submitted"]
    assert any(not c.isascii() for c in comments)  # unicode reaches the services
    assert sim.redemptions


def test_the_segmenters_own_replay_puts_simulated_users_in_every_stage(
    product: tuple[SimSpec, Simulation],
) -> None:
    spec, sim = product
    cfg = load_yaml(REPO / "config" / "segmenter.yaml", SegmenterConfig)
    result = replay((Event.from_wire(e) for e in sim.events), cfg, spec.end)
    assert {s for s, n in result.stages.items() if n} == {
        "new",
        "activated",
        "active",
        "reactivated",
        "at_risk",
        "dormant",
        "churned",
    }
    for segment in ("core", "engaged_learners", "stalled_trial", "detractors", "champions"):
        assert result.segments.get(segment, 0) > 0, segment


def test_users_in_the_winbacks_treatment_group_come_back_more_often() -> None:
    spec = SimSpec(11, 300, 12, START)
    held_out = simulate(spec, lambda _: False)
    treated = simulate(spec, lambda _: True)
    sessions = [sum(1 for e in s.events if e.get("type") == "screen") for s in (held_out, treated)]
    assert sessions[1] > sessions[0]


def test_a_spec_without_users_or_weeks_or_timezone_is_refused() -> None:
    with pytest.raises(ValueError, match="users"):
        SimSpec(1, 0, 4, START)
    with pytest.raises(ValueError, match="weeks"):
        SimSpec(1, 5, 0, START)
    with pytest.raises(ValueError, match="timezone"):
        SimSpec(1, 5, 4, datetime(2026, 1, 1))
