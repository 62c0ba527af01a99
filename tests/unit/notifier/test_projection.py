"""The notifier's projection of a user, folded from events, lifecycle and rewards inputs."""

from __future__ import annotations

from datetime import timedelta

from services.notifier.domain.projection import Lot, Projection, apply
from tests.unit.notifier.support import (
    at,
    event,
    expiry_check,
    identify,
    rewards,
    segment,
    stage,
    track,
    unsubscribe,
)


def test_identity_fields_and_traits_from_identify_and_context() -> None:
    p = Projection("u1")
    apply(p, identify(at(0), first_name="Ada", email="ada@example.com", plan="pro", nested={"x": 1}))
    apply(
        p, event("track", at(0, 1), name="Opened", context={"timezone": "Europe/Berlin", "locale": "de-DE"})
    )
    assert (p.email, p.timezone, p.locale) == ("ada@example.com", "Europe/Berlin", "de-DE")
    assert p.traits == {"first_name": "Ada", "email": "ada@example.com", "plan": "pro"}
    apply(p, identify(at(-1), first_name="Old"))  # late identify does not win
    assert p.traits["first_name"] == "Ada"
    apply(p, identify(at(1), plan=None))  # null removes a trait
    assert "plan" not in p.traits


def test_lifecycle_inputs() -> None:
    p = Projection("u1")
    apply(p, stage("new", at(0)))
    apply(p, stage("activated", at(1)))
    apply(p, stage("at_risk", at(10)))
    apply(p, stage("active", at(5)))  # late: does not move the stage back
    assert (p.stage, p.stage_since, p.activated, p.activated_at, p.signup_at) == (
        "at_risk",
        at(10),
        True,
        at(1),
        at(0),
    )
    apply(p, segment("core", at(2)))
    apply(p, segment("vip", at(2)))
    apply(p, segment("core", at(3), entered=False))
    assert p.segments == {"vip"}


def test_signup_event_sets_signup_time() -> None:
    p = Projection("u1")
    apply(p, track("Signed Up", at(2)))
    apply(p, track("Signed Up", at(1)))
    assert p.signup_at == at(1)


def test_points_and_lots_spent_earliest_expiry_first() -> None:
    p = Projection("u1")
    apply(p, rewards("points_awarded", at(0), points=100, expires_at=at(30)))
    apply(p, rewards("points_awarded", at(0), points=50, expires_at=at(10)))
    apply(p, rewards("points_awarded", at(0), points=20))
    apply(p, rewards("points_redeemed", at(1), points=70))
    assert p.points_balance == 100
    assert p.lots == [Lot(80, at(30))]
    apply(p, rewards("points_expired", at(31), points=80, balance=20))
    assert (p.points_balance, p.lots) == (20, [])
    apply(p, rewards("points_awarded", at(32), points=30, expires_at=at(60), lot_id="lot-a"))
    apply(p, rewards("points_awarded", at(32), points=30, expires_at=at(60), lot_id="lot-b"))
    apply(p, rewards("points_expired", at(33), points=30, lot_id="lot-a"))  # e.g. an early expiry
    assert [lot.lot_id for lot in p.lots] == ["lot-b"]
    apply(p, rewards("tier_changed", at(31), tier="gold", from_tier="silver"))
    assert p.tier == "gold"


def test_expiry_check_drops_expired_lots() -> None:
    p = Projection("u1", lots=[Lot(5, at(1)), Lot(5, at(3))])
    apply(p, expiry_check(at(2)))
    assert p.lots == [Lot(5, at(3))]


def test_nps_answer_is_returned_and_kept() -> None:
    p = Projection("u1")
    answer = apply(p, track("NPS Submitted", at(0), score=3, comment="too slow"))
    assert answer is not None and answer.category == "detractor"
    assert p.nps == answer
    assert apply(p, track("NPS Submitted", at(1), score="eleven")) is None
    assert p.nps == answer


def test_preferences() -> None:
    p = Projection("u1")
    apply(p, unsubscribe("topic:surveys", at(0)))
    assert not p.subscribed("email", "surveys")
    assert p.subscribed("email", "onboarding")
    apply(p, unsubscribe("channel:email", at(0)))
    assert not p.subscribed("email", "onboarding") and p.subscribed("inapp", "onboarding")
    apply(p, unsubscribe("all", at(0) + timedelta(seconds=1)))
    assert not p.subscribed("inapp", None)
