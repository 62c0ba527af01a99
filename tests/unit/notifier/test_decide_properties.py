"""Properties of decide + recheck over arbitrary input histories of one user, driven through a
small scheduler the way the service's timers will: holdout users get nothing, send keys never
repeat, re-entry and churn rules hold, caps are never exceeded, the projection survives its JSON
form, and a replay decides exactly the same."""

from __future__ import annotations

import heapq
import itertools
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.notifier.config import NotifierConfig
from services.notifier.domain.assignment import HOLDOUT, assign
from services.notifier.domain.decide import decide
from services.notifier.domain.inputs import Input
from services.notifier.domain.projection import Projection
from services.notifier.domain.projection_json import from_json, to_json
from services.notifier.domain.recheck import recheck, record_sent
from services.notifier.domain.sends import PlannedSend, SendOutcome
from tests.unit.notifier.support import (
    at as t0_plus,
)
from tests.unit.notifier.support import (
    config,
    expiry_check,
    identify,
    rewards,
    shipped_data,
    signer,
    stage,
    track,
    unsubscribe,
)

STAGES = ["new", "activated", "active", "reactivated", "at_risk", "dormant", "churned"]
TIERS = ["bronze", "silver", "gold", "platinum"]
KINDS = [
    "identify",
    "identify",
    "signup",
    "stage",
    "stage",
    "award",
    "tier",
    "tier",
    "nps",
    "unsubscribe",
    "other",
]


def make(kind: str, when: datetime, arg: int) -> Input:
    if kind == "identify":
        return identify(
            when, email="u1@example.com", first_name="Ada", timezone=["Europe/Berlin", "Asia/Tokyo"][arg % 2]
        )
    if kind == "signup":
        return track("Signed Up", when)
    if kind == "stage":
        return stage(STAGES[arg % len(STAGES)], when)
    if kind == "award":
        return rewards(
            "points_awarded", when, points=10 * (arg % 20 + 1), expires_at=when + timedelta(days=arg % 40 + 1)
        )
    if kind == "tier":
        return rewards("tier_changed", when, tier=TIERS[arg % 4], from_tier=TIERS[(arg // 4) % 4])
    if kind == "nps":
        return track("NPS Submitted", when, score=arg % 11)
    if kind == "unsubscribe":
        return unsubscribe(["topic:rewards", "channel:email", "topic:surveys"][arg % 3], when)
    return track("Lesson Completed", when)


steps = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 90), st.integers(0, 36 * 60)),  # minutes since the previous input
        st.sampled_from(KINDS),
        st.integers(0, 1000),
    ),
    min_size=1,
    max_size=30,
)


def build(history: list[tuple[int, str, int]]) -> list[Input]:
    when = t0_plus(0)
    inputs = []
    for minutes, kind, arg in history:
        when += timedelta(minutes=minutes)
        inputs.append(make(kind, when, arg))
    return inputs


def tight() -> NotifierConfig:
    """The shipped campaigns with tighter caps and a tier campaign that may fire hourly, so that
    histories hit the caps often."""
    campaigns = shipped_data()["campaigns"]
    for campaign in campaigns:
        if campaign["name"] == "tier_up":
            campaign["reentry"] = "1h"
    caps = [{"limit": 1, "period": "12h"}, {"limit": 3, "period": "7d"}]
    return config(caps=caps, campaigns=campaigns)


TIGHT = tight()


def run(inputs: list[Input], cfg: NotifierConfig = TIGHT) -> dict[str, Any]:
    """Run the inputs through decide, timers and recheck; return everything that happened."""
    p = Projection("u1")
    queue: list[tuple[datetime, int, str, Any]] = []
    order = 0
    for item in inputs:
        heapq.heappush(queue, (item.at, order, "input", item))
        order += 1
    planned: list[PlannedSend] = []
    entries = []
    outcomes: list[SendOutcome] = []
    sent_at: list[tuple[str, datetime]] = []
    timer: datetime | None = None
    while queue:
        now, _, kind, payload = heapq.heappop(queue)
        if kind == "timer":
            if payload != timer:
                continue  # superseded
            payload = expiry_check(now)
        if kind in ("input", "timer"):
            decision = decide(p, payload, cfg, now)
            planned += decision.sends
            entries += [(e, stage_of(p)) for e in decision.entries]
            outcomes += decision.outcomes
            for send in decision.sends:
                heapq.heappush(queue, (max(send.due_at, now), order, "send", send))
                order += 1
            if decision.next_check_at is not None and decision.next_check_at != timer:
                timer = decision.next_check_at
                heapq.heappush(queue, (max(timer, now), order, "timer", timer))
                order += 1
        else:
            outcome = recheck(p, payload, cfg, now, signer=signer(cfg))
            outcomes.append(outcome)
            if outcome.kind == "sent":
                record_sent(p, cfg.derived.campaigns[payload.campaign], now)
                sent_at.append((payload.campaign, now))
            elif outcome.kind == "deferred" and outcome.until is not None:
                heapq.heappush(queue, (outcome.until, order, "send", payload))
                order += 1
        assert from_json(to_json(p)) == p
    return {"planned": planned, "entries": entries, "outcomes": outcomes, "sent": sent_at}


def stage_of(p: Projection) -> tuple[str | None, datetime | None]:
    return p.stage, p.stage_since


@settings(max_examples=40, deadline=None)
@given(history=steps)
def test_invariants_over_arbitrary_histories(history: list[tuple[int, str, int]]) -> None:
    cfg = TIGHT
    result = run(build(history))
    keys = [s.send_key for s in result["planned"]]
    assert len(keys) == len(set(keys))
    for send in result["planned"]:
        campaign = cfg.derived.campaigns[send.campaign]
        assert send.variant != HOLDOUT
        assert send.variant == assign(send.campaign, "u1", campaign.holdout, campaign.variant_weights)
    by_campaign: dict[str, list[datetime]] = {}
    for entry, (stage_name, since) in result["entries"]:
        by_campaign.setdefault(entry.campaign, []).append(entry.at)
        assert not (stage_name == "churned" and since is not None and entry.at - since >= timedelta(days=180))
    for name, times in by_campaign.items():
        reentry = cfg.derived.campaigns[name].reentry
        if reentry is None:
            assert len(times) == 1
        else:
            assert all(b - a >= reentry for a, b in itertools.pairwise(times))
    counted = sorted(at for name, at in result["sent"] if cfg.derived.campaigns[name].global_caps)
    for cap in cfg.caps:
        for end in counted:
            assert sum(1 for t in counted if end - cap.period < t <= end) <= cap.limit
    for outcome in result["outcomes"]:
        if outcome.kind == "deferred":
            assert outcome.until is not None and outcome.until > outcome.at


@settings(max_examples=10, deadline=None)
@given(history=steps)
def test_replay_decides_the_same(history: list[tuple[int, str, int]]) -> None:
    inputs = build(history)
    first, second = run(inputs), run(inputs)
    assert [s.send_key for s in first["planned"]] == [s.send_key for s in second["planned"]]
    assert first["sent"] == second["sent"]
