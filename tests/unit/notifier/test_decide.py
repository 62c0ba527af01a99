"""The campaigns of the shipped config, driven through decide and recheck as the service will."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from services.notifier.domain.assignment import HOLDOUT
from services.notifier.domain.decide import decide
from services.notifier.domain.projection import Projection
from shared.ids import output_id
from tests.unit.notifier.support import (
    at,
    config,
    deliver,
    expiry_check,
    fire,
    identify,
    rewards,
    shipped,
    shipped_data,
    signer,
    stage,
    track,
)


def known_user(user: str = "u1", **traits: object) -> Projection:
    p = Projection(user)
    fire(p, identify(at(-1), user, email=f"{user}@example.com", first_name="Ada", **traits))
    return p


def test_signup_welcomes_inapp_now_and_plans_the_nudge_for_24h_later() -> None:
    p = known_user()
    signup = track("Signed Up", at(0))
    decision = fire(p, signup)
    by_campaign = {s.campaign: s for s in decision.sends}
    assert set(by_campaign) == {"welcome", "activation_nudge"}
    welcome, nudge = by_campaign["welcome"], by_campaign["activation_nudge"]
    assert welcome.send_key == output_id(signup.input_id, "welcome:inapp")
    assert nudge.send_key == output_id(signup.input_id, "activation_nudge:email")
    assert (welcome.due_at, nudge.due_at) == (at(0), at(0, 24))
    [outcome] = deliver(p, welcome)
    assert outcome.kind == "sent" and outcome.message is not None
    assert outcome.message.fields["title"] == "Welcome, Ada!"


def test_send_keys_are_deterministic_and_scoped_by_user() -> None:
    one = track("Signed Up", at(0), "u1")
    again = fire(None, one).sends
    assert [s.send_key for s in fire(None, one).sends] == [s.send_key for s in again]
    other = track("Signed Up", at(0), "u2")
    other_keys = {s.send_key for s in fire(None, other).sends}
    assert other_keys.isdisjoint({s.send_key for s in again})


def test_nudge_is_cancelled_when_the_user_activated_meanwhile() -> None:
    p = known_user()
    nudge = next(s for s in fire(p, track("Signed Up", at(0))).sends if s.campaign == "activation_nudge")
    fire(p, stage("activated", at(0, 5)))
    assert [o.kind for o in deliver(p, nudge)] == ["cancelled"]
    assert deliver(p, nudge)[0].reason == "conditions_no_longer_hold"


def test_nudge_goes_out_when_still_not_activated_with_a_working_unsubscribe_link() -> None:
    p = known_user()
    nudge = next(s for s in fire(p, track("Signed Up", at(0))).sends if s.campaign == "activation_nudge")
    [outcome] = deliver(p, nudge)
    assert outcome.kind == "sent" and outcome.message is not None
    text = outcome.message.fields["text"]
    assert text.startswith("Hi Ada,")
    url = text.split("Unsubscribe from onboarding emails: ")[1].strip()
    claim = signer().verify(parse_qs(urlsplit(url).query)["token"][0], at(2))
    assert (claim.user_id, claim.scope) == ("u1", "topic:onboarding")


def test_at_risk_winback_holds_out_about_ten_percent_and_measures_the_goal() -> None:
    decisions = []
    for i in range(400):
        user = f"user-{i}"
        p = Projection(user)
        fire(p, stage("activated", at(-20), user))
        decisions.append((p, fire(p, stage("at_risk", at(0), user))))
    winback = [d.entries[0] for _, d in decisions if d.entries and d.entries[0].campaign == "at_risk_winback"]
    held = [e for e in winback if e.group == HOLDOUT]
    assert len(winback) == 400 and 20 <= len(held) <= 60
    for (_p, decision), entry in zip(decisions, winback, strict=True):
        sends = [s for s in decision.sends if s.campaign == "at_risk_winback"]
        if entry.group == HOLDOUT:
            assert not sends
            assert [(o.kind, o.variant, o.reason) for o in decision.outcomes] == [
                ("suppressed", HOLDOUT, "holdout")
            ]
        else:
            assert [s.variant for s in sends] == [entry.group] and not decision.outcomes
        assert entry.goal_until == at(7)
    p, decision = decisions[0]
    back = fire(p, stage("active", at(3), p.user_id))
    assert [(c.campaign, c.at) for c in back.conversions] == [("at_risk_winback", at(3))]
    assert fire(p, stage("active", at(4), p.user_id)).conversions == []  # once per entry


def test_winback_needs_activated_users_and_respects_reentry() -> None:
    p = Projection("u1")
    assert fire(p, stage("at_risk", at(0))).entries == []  # audience: activated only
    fire(p, stage("activated", at(1)))
    assert [e.campaign for e in fire(p, stage("at_risk", at(8))).entries] == ["at_risk_winback"]
    fire(p, stage("active", at(9)))
    assert fire(p, stage("at_risk", at(20))).entries == []  # within 30 days of the last entry
    assert [e.campaign for e in fire(p, stage("at_risk", at(38))).entries] == ["at_risk_winback"]


def test_points_expiring_reminder_comes_from_the_timer_once_per_lot() -> None:
    p = Projection("u1")
    award = fire(p, rewards("points_awarded", at(0), points=120, expires_at=at(30)))
    assert award.next_check_at == at(23)
    assert fire(p, expiry_check(at(22))).sends == []
    check = fire(p, expiry_check(at(23)))
    [send] = check.sends
    assert (send.campaign, send.expiring_points, send.expiring_at) == ("points_expiring", 120, at(30))
    assert check.next_check_at is None
    [outcome] = deliver(p, send)
    assert outcome.message is not None
    assert outcome.message.fields["title"] == "120 points expire on 2024-04-04"  # New York date
    assert fire(p, expiry_check(at(23))).sends == []
    redeemed = fire(p, rewards("points_redeemed", at(25), points=100, balance=20))
    assert [(c.campaign, c.at) for c in redeemed.conversions] == [("points_expiring", at(25))]


def test_small_expiring_amounts_do_not_remind_and_do_not_loop_the_timer() -> None:
    p = Projection("u1")
    fire(p, rewards("points_awarded", at(0), points=10, expires_at=at(30)))
    check = fire(p, expiry_check(at(23)))
    assert check.sends == [] and check.next_check_at is None


def test_tier_up_congratulates_and_tier_down_does_not() -> None:
    p = known_user()
    fire(p, rewards("points_awarded", at(0), points=1500))
    up = fire(p, rewards("tier_changed", at(1), tier="gold", from_tier="silver"))
    [send] = up.sends
    [outcome] = deliver(p, send)
    assert outcome.message is not None
    assert outcome.message.fields["subject"] == "Welcome to Gold, Ada!"
    assert "<strong>Gold</strong>" in outcome.message.fields["html"]
    assert fire(p, rewards("tier_changed", at(3), tier="silver", from_tier="gold")).sends == []


def test_nps_survey_thirty_days_after_activation_then_detractor_follow_up() -> None:
    p = known_user(plan="pro")
    [survey] = fire(p, stage("activated", at(0))).sends
    assert (survey.campaign, survey.due_at) == ("nps_survey", at(30))
    assert deliver(p, survey)[-1].kind == "sent"
    answer = fire(p, track("NPS Submitted", at(31), score=4, comment="too slow"))
    assert [c.campaign for c in answer.conversions] == ["nps_survey"]
    [followup] = answer.sends
    assert (followup.campaign, followup.channel) == ("detractor_followup", "webhook")
    [outcome] = deliver(p, followup)
    assert outcome.message is not None
    assert outcome.message.payload == {
        "user_id": "u1",
        "score": "4",
        "comment": "too slow",
        "email": "u1@example.com",
        "plan": "pro",
    }
    assert fire(p, track("NPS Submitted", at(32), score=9)).sends == []


def test_nps_survey_is_cancelled_for_a_user_gone_dormant() -> None:
    p = known_user()
    [survey] = fire(p, stage("activated", at(0))).sends
    fire(p, stage("dormant", at(29)))
    assert deliver(p, survey)[0].reason == "conditions_no_longer_hold"


def test_users_churned_for_over_180_days_get_nothing() -> None:
    p = known_user()
    fire(p, stage("activated", at(-400)))
    fire(p, stage("churned", at(-200)))
    decision = fire(p, rewards("tier_changed", at(0), tier="gold", from_tier="silver"))
    assert decision.sends == [] and decision.entries == []
    assert [(o.campaign, o.kind, o.reason) for o in decision.outcomes] == [
        ("tier_up", "suppressed", "churned")
    ]
    recent = known_user("u2")
    fire(recent, stage("churned", at(-100), "u2"))
    assert [
        s.campaign
        for s in fire(recent, rewards("tier_changed", at(0), "u2", tier="gold", from_tier="silver")).sends
    ] == ["tier_up"]


def test_a_disabled_campaign_does_not_fire() -> None:
    campaigns = [{**c, "enabled": c["name"] != "welcome"} for c in shipped_data()["campaigns"]]
    cfg = config(campaigns=campaigns)
    assert [s.campaign for s in decide(None, track("Signed Up", at(0)), cfg, at(0)).sends] == [
        "activation_nudge"
    ]


def test_future_input_time_counts_as_now() -> None:
    [welcome, _] = fire(None, track("Signed Up", at(1)), now=at(0)).sends
    assert welcome.trigger_at == at(0)
    assert shipped().derived.campaigns["welcome"].delay == timedelta(0)
