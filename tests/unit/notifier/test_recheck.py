"""Re-check at send time: each outcome, and the order in which the checks apply."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from services.notifier.domain.caps import SentRecord
from services.notifier.domain.projection import Projection
from services.notifier.domain.recheck import recheck
from services.notifier.domain.sends import PlannedSend
from tests.unit.notifier.support import (
    at,
    config,
    deliver,
    fire,
    identify,
    rewards,
    shipped,
    shipped_data,
    signer,
    stage,
    track,
    unsubscribe,
)


def user(**traits: Any) -> Projection:
    p = Projection("u1")
    fire(p, identify(at(-30), email="ada@example.com", first_name="Ada", **traits))
    fire(p, stage("activated", at(-20)))
    return p


def winback(p: Projection, when: datetime = at(0)) -> PlannedSend:
    """A planned win-back for `p`, whatever group the hash gives (forced to a variant)."""
    decision = fire(p, stage("at_risk", when))
    entry = decision.entries[0]
    return PlannedSend(
        send_key="k",
        campaign="at_risk_winback",
        channel="webhook",
        topic="engagement",
        user_id=p.user_id,
        input_id=entry.input_id,
        variant=entry.group if entry.group != "holdout" else "miss_you",
        trigger_at=when,
        due_at=when,
        expires_at=when + timedelta(days=2),
    )


def tier_up(p: Projection, when: datetime = at(0)) -> PlannedSend:
    [send] = fire(p, rewards("tier_changed", when, tier="gold", from_tier="silver")).sends
    return send


def test_quiet_hours_defer_to_the_morning_in_the_users_timezone() -> None:
    p = user()
    night = datetime(2024, 3, 6, 3, tzinfo=UTC)  # 22:00 in New York (the default zone)
    outcomes = deliver(p, winback(p, night))
    assert [o.kind for o in outcomes] == ["deferred", "sent"]
    assert outcomes[0].until == datetime(2024, 3, 6, 13, tzinfo=UTC)  # 08:00 EST
    tokyo = user(timezone="Asia/Tokyo")  # 12:00 there: no reason to wait
    assert [o.kind for o in deliver(tokyo, winback(tokyo, night))] == ["sent"]


def test_a_berlin_user_waits_for_berlin_morning() -> None:
    p = user(timezone="Europe/Berlin")
    late = datetime(2024, 3, 6, 21, 30, tzinfo=UTC)  # 22:30 in Berlin, 16:30 in New York
    outcomes = deliver(p, winback(p, late))
    assert outcomes[0].kind == "deferred"
    assert outcomes[0].until == datetime(2024, 3, 7, 7, tzinfo=UTC)  # 08:00 CET


def test_global_caps_apply_across_campaigns_and_exempt_campaigns_pass() -> None:
    p = user(plan="pro")
    assert deliver(p, tier_up(p, at(0)))[-1].kind == "sent"
    assert deliver(p, winback(p, at(0, 1)))[-1].kind == "sent"
    welcome = fire(p, track("Signed Up", at(0, 2))).sends[0]
    assert welcome.campaign == "welcome"
    capped = deliver(p, welcome)
    assert [(o.kind, o.reason) for o in capped] == [("capped", "global:2/1d")]
    followup = fire(p, track("NPS Submitted", at(0, 3), score=2)).sends[0]
    assert deliver(p, followup)[-1].kind == "sent"  # internal hand-off: not under global caps


def test_campaign_cap() -> None:
    p = user()
    p.sent.append(SentRecord("at_risk_winback", at(-3)))
    [outcome] = deliver(p, winback(p))
    assert (outcome.kind, outcome.reason) == ("capped", "campaign:1/7d")


def test_unsubscribed_by_topic_channel_or_all() -> None:
    for scope in ("topic:rewards", "channel:email", "all"):
        p = user()
        fire(p, unsubscribe(scope, at(-1)))
        assert [(o.kind, o.reason) for o in deliver(p, tier_up(p))] == [("suppressed", "unsubscribed")]
    p = user()
    fire(p, unsubscribe("topic:surveys", at(-1)))
    assert deliver(p, tier_up(p))[-1].kind == "sent"


def test_email_without_address_is_suppressed() -> None:
    p = Projection("u1")
    [send] = fire(p, rewards("tier_changed", at(0), tier="gold", from_tier="silver")).sends
    assert [(o.kind, o.reason) for o in deliver(p, send)] == [("suppressed", "no_address")]


def test_churned_at_send_time_is_suppressed() -> None:
    p = Projection("u1")
    fire(p, identify(at(-1), email="ada@example.com"))
    [survey] = fire(p, stage("activated", at(0))).sends
    fire(p, stage("churned", at(1)))
    assert recheck(p, survey, shipped(), at(182)).reason == "expired"
    kept = replace(survey, expires_at=at(400))  # e.g. a send deferred long ago
    outcome = recheck(p, kept, shipped(), at(182))
    assert (outcome.kind, outcome.reason) == ("suppressed", "churned")


def test_stale_and_disabled_sends_are_cancelled() -> None:
    p = user()
    send = tier_up(p)
    assert recheck(p, send, shipped(), send.expires_at + timedelta(seconds=1)).reason == "expired"
    campaigns = [{**c, "enabled": c["name"] != "tier_up"} for c in shipped_data()["campaigns"]]
    assert recheck(p, send, config(campaigns=campaigns), at(0, 1)).reason == "campaign_disabled"


def test_missing_trait_fails_the_send_instead_of_leaving_a_blank() -> None:
    campaigns = shipped_data()["campaigns"]
    tier = next(c for c in campaigns if c["name"] == "tier_up")
    tier["template"]["subject"] = "Congratulations, {{ traits.first_name }}"
    cfg = config(campaigns=campaigns)
    p = Projection("u1")
    fire(p, identify(at(-1), email="x@example.com"), cfg)
    [send] = fire(p, rewards("tier_changed", at(0), tier="gold", from_tier="silver"), cfg).sends
    [outcome] = deliver(p, send, cfg)
    assert outcome.kind == "failed"
    assert outcome.reason.startswith("template subject:") and "first_name" in outcome.reason
    assert p.sent == []  # a failed render is not counted towards caps


def test_without_a_signer_a_template_needing_the_link_fails() -> None:
    p = user()
    outcome = recheck(p, tier_up(p), shipped(), at(0, 1))
    assert outcome.kind == "failed" and "unsubscribe_url" in outcome.reason


def test_removed_variant_cancels() -> None:
    p = user()
    gone = replace(winback(p), variant="retired_copy")
    assert recheck(p, gone, shipped(), at(0), signer=signer()).reason == "variant_removed"
