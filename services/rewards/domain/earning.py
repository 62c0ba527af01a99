"""Earning steps shared by the inputs: rule awards, badge awards and referral payments."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from services.rewards.config import EarningRule
from services.rewards.domain import badges, referrals
from services.rewards.domain.awards import Step
from services.rewards.domain.conditions import Facts
from services.rewards.domain.outputs import BadgeEarned, ReferralRewarded, StreakExtended
from services.rewards.domain.referrals import ForeignAward
from services.rewards.domain.rules import Skipped, budget_grant, cap_room, record_caps, rule_points, user_zone
from services.rewards.domain.streaks import check_in, local_date
from shared.ids import output_id

REFERRER_RULE: Final = "referral:referrer"
REFEREE_RULE: Final = "referral:referee"


def earn(step: Step, rule: EarningRule, facts: Facts, at: datetime, reference: str | None) -> None:
    """Apply one matching earning rule: points, caps, budget, then the award (see `rules`)."""
    wanted = rule_points(rule, facts, step.tier_multiplier())
    if isinstance(wanted, str):
        step.decision.skipped.append(Skipped(rule.id, wanted))
        return
    zone = user_zone(step.state, step.cfg)
    room = cap_room(step.state, rule, at, at if step.state.as_of is None else max(at, step.state.as_of), zone)
    points = wanted if room is None else min(wanted, room)
    if points <= 0:
        step.decision.skipped.append(Skipped(rule.id, "capped", wanted))
        return
    if rule.budget is not None:
        points = budget_grant(rule, points, step.budget_left(rule.id))
        if points <= 0:
            step.decision.skipped.append(Skipped(rule.id, "budget_exhausted", wanted))
            return
    pending = rule.pending.release_after if rule.pending else None
    lot = step.award(
        rule.id,
        points,
        at,
        pending_for=pending,
        reference=reference,
        expires_after=rule.expires_after,
        counts_for_tier=rule.counts_for_tier,
    )
    if lot is None:
        return
    if points < wanted:
        step.decision.skipped.append(
            Skipped(
                rule.id, "capped" if room is not None and room < wanted else "budget_partial", wanted - points
            )
        )
    record_caps(step.state, rule, at, zone, points)
    if rule.budget is not None:
        step.consume_budget(rule.id, points)


def pay_referral(step: Step, at: datetime) -> None:
    """Pay the referee now and owe the referrer (a `ForeignAward`), if the referral is due."""
    state, ref = step.state, step.cfg.referrals
    if ref is None or not referrals.payable(state.referral, state.activated_at):
        return
    referrer = state.referral.referrer
    assert referrer is not None
    state.referral.paid = True
    when = max(at, state.activated_at) if state.activated_at else at
    if step.award(REFEREE_RULE, ref.referee_points, when) is not None:
        step.decision.outputs.append(
            referral_output(step, state.user_id, "referee", referrer, state.user_id, ref.referee_points, when)
        )
    step.decision.foreign.append(
        ForeignAward(
            referrer,
            REFERRER_RULE,
            ref.referrer_points,
            step.id(REFERRER_RULE),
            when,
            referrer,
            state.user_id,
        )
    )


def referral_output(
    step: Step, user: str, role: str, referrer: str, referee: str, points: int, at: datetime
) -> ReferralRewarded:
    return ReferralRewarded(
        id=output_id(step.input_id, f"referral_rewarded:{role}"),
        user_id=user,
        at=at,
        config_version=step.cfg.version,
        role=role,
        referrer_id=referrer,
        referee_id=referee,
        points=points,
        balance=step.state.book.balances.available,
        source_id=step.input_id,
    )


def award_badges(step: Step, earned: list[badges.BadgeAward], at: datetime) -> None:
    """Announce newly earned badges and book the points that come with them."""
    for award in earned:
        rule_id = f"badge:{award.badge.id}"
        if award.badge.points:
            step.award(rule_id, award.badge.points, at, award_id=step.id(f"{rule_id}:{award.times}"))
        step.decision.outputs.append(
            BadgeEarned(
                id=step.id(f"badge_earned:{award.badge.id}:{award.times}"),
                user_id=step.state.user_id,
                at=at,
                config_version=step.cfg.version,
                badge=award.badge.id,
                times=award.times,
                points=award.badge.points,
                source_id=step.input_id,
            )
        )


def check_in_streak(step: Step, at: datetime) -> None:
    """Count a check-in on the user's local date; announce the streak and its badges."""
    state, cfg = step.state, step.cfg
    assert cfg.streak is not None
    counted = check_in(state.streak, local_date(at, user_zone(state, cfg)), cfg.streak.freezes)
    if counted is None:
        return
    step.decision.outputs.append(
        StreakExtended(
            id=step.id("streak"),
            user_id=state.user_id,
            at=at,
            config_version=cfg.version,
            days=counted.length,
            local_date=counted.local_date,
            freezes_used=counted.freezes_used,
            source_id=step.input_id,
        )
    )
    award_badges(step, badges.on_streak(state, counted.length, cfg), at)
