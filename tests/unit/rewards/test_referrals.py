"""Referrals: at most one referrer per referee, never self-referral or a cycle, both sides paid
once and only after the referee activates."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.rewards.domain.decide import apply_foreign_award, decide
from services.rewards.domain.inputs import EventInput, RewardsInput
from services.rewards.domain.outputs import PointsAwarded, ReferralRewarded
from services.rewards.domain.simulate import Replay
from tests.unit.rewards.support import T0, day, example_config, of_type, stage, track

CFG = example_config()


def paid(r: Replay) -> list[tuple[str, str, str, int]]:
    return [
        (o.user_id, o.role, o.referee_id, o.points)
        for d in r.decisions
        for o in of_type(d.outputs, ReferralRewarded)
    ]


def referral_awards(r: Replay) -> list[tuple[str, str, int]]:
    return [
        (o.user_id, o.rule_id, o.points)
        for d in r.decisions
        for o in of_type(d.outputs, PointsAwarded)
        if o.rule_id.startswith("referral:")
    ]


def chain_of(r: Replay, user: str) -> tuple[str, ...]:
    """The referrer's own referrers, nearest first, as the adapter reads them from the store."""
    out: list[str] = []
    current = r.states.get(user)
    while current is not None and current.referral.referrer and current.referral.referrer not in out:
        out.append(current.referral.referrer)
        current = r.states.get(current.referral.referrer)
    return tuple(out)


def claim(r: Replay, referee: str, referrer: str, at: object) -> None:
    base = track("Signed Up", at, user=referee, referrer_id=referrer)  # type: ignore[arg-type]
    r.feed(EventInput(base.input_id, base.event, chain_of(r, referrer)))


def replay() -> Replay:
    r = Replay(CFG)
    r.keep_decisions = True
    return r


def test_both_are_paid_once_after_the_referee_activates() -> None:
    r = replay()
    claim(r, "bob", "alice", T0)
    assert paid(r) == []
    r.feed(stage("activated", day(1), user="bob"))
    r.feed(stage("active", day(8), user="bob", activated=True))
    r.feed(stage("reactivated", day(60), user="bob", activated=True))
    assert paid(r) == [("bob", "referee", "bob", 200), ("alice", "referrer", "bob", 200)]
    assert sorted(referral_awards(r)) == [
        ("alice", "referral:referrer", 200),
        ("bob", "referral:referee", 200),
    ]
    assert r.states["alice"].book.balances.available == 200


def test_self_referral_pays_nothing() -> None:
    r = replay()
    claim(r, "bob", "bob", T0)
    r.feed(stage("activated", day(1), user="bob"))
    assert paid(r) == []
    assert r.states["bob"].referral.refused == "self_referral"


def test_a_referral_cycle_pays_nothing() -> None:
    r = replay()
    claim(r, "bob", "alice", T0)
    claim(r, "alice", "bob", day(0, 1))  # bob was referred by alice: alice cannot be bob's referee
    r.feed(stage("activated", day(1), user="alice"))
    assert paid(r) == []
    assert r.states["alice"].referral.refused == "referral_cycle"


def test_only_the_first_referrer_counts() -> None:
    r = replay()
    claim(r, "bob", "alice", T0)
    claim(r, "bob", "carol", day(0, 1))
    r.feed(stage("activated", day(1), user="bob"))
    assert [p[0] for p in paid(r)] == ["bob", "alice"]


def test_a_claim_made_after_activation_pays_nothing() -> None:
    r = replay()
    r.feed(stage("activated", T0, user="bob"))
    claim(r, "bob", "alice", day(1))
    assert paid(r) == []


def test_a_claim_processed_late_but_made_before_activation_pays() -> None:
    r = replay()
    r.feed(stage("activated", day(1), user="bob"))
    base = track("Signed Up", T0, user="bob", referrer_id="alice")
    r.feed(EventInput(base.input_id, base.event), now=day(1, 1))
    assert [p[1] for p in paid(r)] == ["referee", "referrer"]


def test_the_referrer_side_is_booked_once() -> None:
    claim_in = track("Signed Up", T0, user="bob", referrer_id="alice")
    d = decide(None, claim_in, CFG, T0)
    d = decide(d.state, stage("activated", day(1), user="bob"), CFG, day(1))
    [award] = d.foreign
    first = apply_foreign_award(None, award, CFG)
    again = apply_foreign_award(first.state, award, CFG)
    assert len(of_type(first.outputs, PointsAwarded)) == 1 and not again.outputs
    assert first.state.book.balances.available == 200


USERS = ["u0", "u1", "u2", "u3"]
STEP = st.one_of(
    st.tuples(st.just("claim"), st.sampled_from(USERS), st.sampled_from(USERS)),
    st.tuples(st.just("activate"), st.sampled_from(USERS), st.just("")),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(STEP, max_size=20))
def test_referral_rules_hold_for_any_sequence(steps: list[tuple[str, str, str]]) -> None:
    r = replay()
    claimed_at: dict[str, object] = {}
    activated_at: dict[str, object] = {}
    for i, (kind, a, b) in enumerate(steps):
        at = T0 + timedelta(hours=i)
        inp: RewardsInput
        if kind == "claim":
            claim(r, a, b, at)
            claimed_at.setdefault(a, at)
        else:
            inp = stage("activated", at, user=a)
            r.feed(inp)
            activated_at.setdefault(a, at)
    referee_payments = [p for p in paid(r) if p[1] == "referee"]
    referees = [p[2] for p in referee_payments]
    assert len(referees) == len(set(referees))  # once per referee
    for user, state in r.states.items():
        ref = state.referral.referrer
        assert ref != user  # never self
        seen = {user}
        while ref is not None:  # no cycle in the referral graph
            assert ref not in seen
            seen.add(ref)
            nxt = r.states.get(ref)
            ref = nxt.referral.referrer if nxt else None
    for referee in referees:
        assert referee in activated_at
        referrer = r.states[referee].referral.referrer
        assert referrer is not None and referrer != referee
        assert (referrer, "referrer", referee, 200) in paid(r)
    referrer_payments = [p for p in paid(r) if p[1] == "referrer"]
    assert len(referrer_payments) == len(referee_payments)
