"""`recheck(projection, planned, cfg, now) -> SendOutcome`: decide, at send time, what becomes of
a planned send. No I/O, no clock. The checks run in this order, the first that applies wins:

1. the campaign is gone or disabled, or the send is past `expires_at` → `cancelled`;
2. the user is churned for too long → `suppressed` (`churned`); unsubscribed from the channel, the
   topic or everything → `suppressed` (`unsubscribed`); an email campaign without an address →
   `suppressed` (`no_address`);
3. the audience or the campaign's `recheck` condition no longer holds → `cancelled`
   (`conditions_no_longer_hold`), e.g. "24 h after signup, if still not activated";
4. quiet hours in the user's timezone (else the configured default) → `deferred` until the first
   instant they end (DST-safe, see `quiet_hours`);
5. a frequency cap refuses it → `capped` (the cap's label);
6. the template renders → `sent` with the message; a render error → `failed`.

Caps are checked last on purpose: a deferred send is capped only by what was sent by the time it
really goes out. After a `sent` outcome the caller stores `record_sent(...)`'s projection.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.notifier.config import NotifierConfig
from services.notifier.domain.campaign import Campaign
from services.notifier.domain.caps import SentRecord, check_caps
from services.notifier.domain.conditions import holds
from services.notifier.domain.decide import churned_too_long
from services.notifier.domain.projection import Projection
from services.notifier.domain.quiet_hours import next_allowed, zone
from services.notifier.domain.sends import OutcomeKind, PlannedSend, SendOutcome
from services.notifier.domain.templates import TemplateRenderError, render
from services.notifier.domain.unsubscribe import UnsubscribeSigner, scope_for


def recheck(
    p: Projection,
    planned: PlannedSend,
    cfg: NotifierConfig,
    now: datetime,
    *,
    signer: UnsubscribeSigner | None = None,
) -> SendOutcome:
    """The outcome of `planned` at `now` (see the module docstring for the order of checks).

    `signer` makes the `unsubscribe_url` template variable; without it a template that uses the
    link fails rather than sending a message without one.
    """

    def outcome(kind: OutcomeKind, reason: str = "", **extra: Any) -> SendOutcome:
        return SendOutcome(
            kind,
            planned.send_key,
            planned.campaign,
            planned.variant,
            planned.channel,
            planned.user_id,
            planned.input_id,
            now,
            reason,
            **extra,
        )

    campaign = cfg.derived.campaigns.get(planned.campaign)
    if campaign is None:
        return outcome("cancelled", "campaign_disabled")
    if now > planned.expires_at:
        return outcome("cancelled", "expired")
    if churned_too_long(p, cfg, now):
        return outcome("suppressed", "churned")
    if not p.subscribed(planned.channel, planned.topic):
        return outcome("suppressed", "unsubscribed")
    if planned.channel == "email" and not p.email:
        return outcome("suppressed", "no_address")
    for condition in (campaign.audience, campaign.recheck):
        if condition is not None and not holds(condition, p, now):
            return outcome("cancelled", "conditions_no_longer_hold")
    if campaign.quiet_hours:
        allowed = next_allowed(now, zone(p.timezone, cfg.timezone), cfg.derived.quiet)
        if allowed > now:
            return outcome("deferred", "quiet_hours", until=allowed)
    verdict = check_caps(
        p.sent,
        campaign.name,
        global_caps=cfg.caps,
        campaign_caps=campaign.caps,
        counts_globally=campaign.global_caps,
        now=now,
    )
    if not verdict.allowed:
        return outcome("capped", verdict.cap or "")
    variant = campaign.variant(planned.variant)
    if variant is None:
        return outcome("cancelled", "variant_removed")
    context = template_context(p, campaign, planned, now, signer, cfg.timezone)
    try:
        message = render(variant.template, context)
    except TemplateRenderError as exc:
        return outcome("failed", f"template {exc.field}: {exc.message}"[:500])
    return outcome("sent", message=message)


def record_sent(p: Projection, campaign: Campaign, at: datetime) -> None:
    """Count a message that went out towards the user's caps (call it after a `sent` outcome)."""
    p.sent.append(SentRecord(campaign.name, at, campaign.global_caps))


def template_context(
    p: Projection,
    campaign: Campaign,
    planned: PlannedSend,
    now: datetime,
    signer: UnsubscribeSigner | None,
    default_timezone: str = "UTC",
) -> dict[str, Any]:
    """The variables a template sees (`templates.VARIABLES`). A value the user lacks is left
    out, so `StrictUndefined` fails the render instead of printing "None" or a blank. Dates are
    the user's local dates (their timezone, else `default_timezone`)."""
    tz = zone(p.timezone, default_timezone)
    values: dict[str, Any] = {
        "user_id": p.user_id,
        "traits": dict(p.traits),
        "points": p.points_balance,
        "tier": p.tier,
        "stage": p.stage,
        "segments": sorted(p.segments),
        "locale": p.locale,
        "timezone": p.timezone,
        "email": p.email,
        "campaign": campaign.name,
        "variant": planned.variant,
        "expiring_points": planned.expiring_points,
        "expiring_at": planned.expiring_at.astimezone(tz).date().isoformat() if planned.expiring_at else None,
        "nps": {"score": p.nps.score, "category": p.nps.category, "comment": p.nps.comment}
        if p.nps
        else None,
        "unsubscribe_url": signer.url(p.user_id, scope_for(topic=campaign.topic), now) if signer else None,
    }
    return {name: value for name, value in values.items() if value is not None}
