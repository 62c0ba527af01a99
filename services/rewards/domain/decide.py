"""`decide(state, input, cfg, now) -> Decision`: the one decision function of the rewards service.

The live consumer, the timer worker, the redemption API and `simulate` all call exactly this, so
a replay awards what the live service awarded. Pure: time comes in as `now` (and the input's own
instant), the per-rule budgets' remaining amounts come in as `budgets` (the adapter reads them
under a row lock; see `budgeted_rules`), and everything to store or send comes back in the
`Decision`. The state is updated in place and returned in the decision.

The instant of an input is its event `timestamp` (clamped to `now` when beyond
`now + future_tolerance`), a lifecycle event's `at`, a timer's `due_at`, a command's `at`.
Tier reviews due by that instant are applied first, each at its own instant.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from services.rewards.config import EarningRule, RewardsConfig
from services.rewards.domain import badges, referrals
from services.rewards.domain.awards import Decision, MissingBudget, Step
from services.rewards.domain.book import InsufficientBalance
from services.rewards.domain.conditions import Facts, all_hold
from services.rewards.domain.inputs import (
    EventInput,
    LifecycleInput,
    RedemptionInput,
    RewardsInput,
    Timer,
    TimerInput,
    TimerKind,
)
from services.rewards.domain.outputs import (
    BadgeEarned,
    PointsExpired,
    PointsExpiringSoon,
    PointsRedeemed,
    ReferralRewarded,
    StreakExtended,
)
from services.rewards.domain.referrals import ForeignAward
from services.rewards.domain.rules import (
    Skipped,
    budget_grant,
    cap_room,
    matching,
    prune_caps,
    record_caps,
    rule_points,
    user_zone,
    valid_zone,
)
from services.rewards.domain.state import UserRewardsState
from services.rewards.domain.streaks import check_in, local_date
from services.rewards.domain.tiers import next_review, prune
from shared.events import Event
from shared.ids import output_id

REFERRER_RULE = "referral:referrer"
REFEREE_RULE = "referral:referee"

__all__ = ["Decision", "MissingBudget", "apply_foreign_award", "budgeted_rules", "decide"]


def budgeted_rules(inp: RewardsInput, cfg: RewardsConfig) -> list[str]:
    """Ids of the budgeted rules this input may draw on: the adapter locks and reads exactly these
    budgets and passes their remaining amounts to `decide`."""
    if isinstance(inp, EventInput) and inp.event.type == "track":
        rules = matching(cfg, event=inp.event.event)
    elif isinstance(inp, LifecycleInput) and inp.type == "stage_changed":
        rules = matching(cfg, stage=inp.to_stage)
    else:
        rules = []
    reversing = [
        r
        for r in cfg.rules
        if isinstance(inp, EventInput) and r.reversed_by and r.reversed_by.event == inp.event.event
    ]
    return sorted({r.id for r in rules + reversing if r.budget is not None})


def decide(
    state: UserRewardsState | None,
    inp: RewardsInput,
    cfg: RewardsConfig,
    now: datetime,
    budgets: Mapping[str, int] | None = None,
) -> Decision:
    """Apply one input to its user's state (None: a user never seen). Raises `MissingBudget` if a
    budgeted rule matches and `budgets` lacks its remaining amount."""
    state = state or UserRewardsState.new(inp.user_id)
    step = Step(state, cfg, inp.input_id, budgets or {}, Decision(state))
    at = inp.at
    if at > now + cfg.future_tolerance:
        at = now
    step.catch_up_tiers(max(at, state.as_of) if state.as_of else at)
    if isinstance(inp, EventInput):
        _on_event(step, inp, at)
    elif isinstance(inp, LifecycleInput):
        _on_lifecycle(step, inp, at)
    elif isinstance(inp, TimerInput):
        _on_timer(step, inp.timer)
    else:
        _on_command(step, inp, at)
    _finish(step, at)
    return step.decision


def apply_foreign_award(state: UserRewardsState | None, award: ForeignAward, cfg: RewardsConfig) -> Decision:
    """Book the referrer's side of a referral on the referrer's state (once per `award_id`)."""
    state = state or UserRewardsState.new(award.user_id)
    step = Step(state, cfg, award.award_id, {}, Decision(state))
    step.catch_up_tiers(max(award.at, state.as_of) if state.as_of else award.at)
    if step.award(award.rule_id, award.points, award.at, award_id=award.award_id) is not None:
        step.decision.outputs.append(
            _referral_output(
                step, award.user_id, "referrer", award.referrer_id, award.referee_id, award.points, award.at
            )
        )
    _finish(step, award.at)
    return step.decision


def _on_event(step: Step, inp: EventInput, at: datetime) -> None:
    event, state, cfg = inp.event, step.state, step.cfg
    traits = (
        {**event.context.get("traits", {}), **event.traits}
        if isinstance(event.context.get("traits"), dict)
        else event.traits
    )
    state.traits.update(traits)
    zone_name = valid_zone(traits.get("timezone")) or valid_zone(event.context.get("timezone"))
    if zone_name:
        state.timezone = zone_name
    if event.type != "track" or event.event is None:
        return
    referrer = referrals.claimed_referrer(event, cfg)
    if referrer is not None and referrals.accept_claim(state.referral, event, referrer, inp.referrer_chain):
        _pay_referral(step, at)
    facts = Facts(event.properties, state.traits, state.stage, _tier_name(step), state.segments)
    for rule in matching(cfg, event=event.event):
        if all_hold(rule.conditions, facts):
            _earn(step, rule, facts, at, _reference(rule, event))
    for rule in cfg.rules:
        if rule.reversed_by is not None and rule.reversed_by.event == event.event:
            ref = _scalar(event.properties.get(rule.reversed_by.match))
            lot = state.book.find_by_reference(rule.id, ref) if ref is not None else None
            if lot is not None:
                step.reverse(lot, at, f"{event.event}")
    if cfg.streak is not None and event.event == cfg.streak.event:
        counted = check_in(state.streak, local_date(at, user_zone(state, cfg)), cfg.streak.freezes)
        if counted is not None:
            step.decision.outputs.append(
                StreakExtended(
                    id=step.id("streak"),
                    user_id=state.user_id,
                    at=at,
                    config_version=cfg.version,
                    length=counted.length,
                    local_date=counted.local_date,
                    freezes_used=counted.freezes_used,
                )
            )
            _badges(step, badges.on_streak(state, counted.length, cfg), at)
    _badges(step, badges.on_event(state, event.event, event.properties, cfg), at)


def _on_lifecycle(step: Step, inp: LifecycleInput, at: datetime) -> None:
    state = step.state
    if inp.type == "segment_entered" and inp.segment:
        state.segments.add(inp.segment)
    elif inp.type == "segment_exited" and inp.segment:
        state.segments.discard(inp.segment)
    if inp.type != "stage_changed" or inp.to_stage is None:
        return
    state.stage = inp.to_stage
    if (inp.activated or inp.to_stage == "activated") and state.activated_at is None:
        state.activated_at = at
    facts = Facts({}, state.traits, state.stage, _tier_name(step), state.segments)
    for rule in matching(step.cfg, stage=inp.to_stage):
        if all_hold(rule.conditions, facts):
            _earn(step, rule, facts, at, None)
    _pay_referral(step, at)


def _on_timer(step: Step, timer: Timer) -> None:
    book, cfg, at, d = step.state.book, step.cfg, timer.due_at, step.decision
    user = step.state.user_id
    if timer.kind is TimerKind.LOT_EXPIRY:
        tx = book.expire(timer.key, step.id("expire"), at)
        if tx is not None:
            d.transactions.append(tx)
            points = -sum(e.amount for e in tx.entries if e.amount < 0)
            d.outputs.append(
                PointsExpired(
                    id=tx.id,
                    user_id=user,
                    at=at,
                    config_version=cfg.version,
                    rule_id=tx.rule_id or "",
                    lot_id=timer.key,
                    points=points,
                )
            )
    elif timer.kind is TimerKind.EXPIRY_WARNING:
        lot = book.lots.get(timer.key)
        if lot is not None and not lot.expired and lot.remaining > 0 and lot.expires_at is not None:
            d.outputs.append(
                PointsExpiringSoon(
                    id=step.id("expiring_soon"),
                    user_id=user,
                    at=at,
                    config_version=cfg.version,
                    lot_id=lot.id,
                    points=lot.remaining,
                    expires_at=lot.expires_at,
                )
            )
    elif timer.kind is TimerKind.PENDING_RELEASE:
        d.transactions += book.release_pending(timer.key, step.id("release_pending"), at)
    elif timer.kind is TimerKind.HOLD_EXPIRY:
        tx = book.release(timer.key, step.id("release"), at)
        if tx is not None:
            d.transactions.append(tx)


def _on_command(step: Step, cmd: RedemptionInput, at: datetime) -> None:
    book, d = step.state.book, step.decision
    if cmd.action == "reserve":
        hold_id = step.id("hold")
        d.hold_id = hold_id
        if hold_id in book.holds:
            return
        try:
            d.transactions.append(book.hold(hold_id, cmd.amount, at, at + step.cfg.holds.ttl))
        except InsufficientBalance:
            d.refused = "insufficient_balance"
            return
        d.timers.append(Timer(at + step.cfg.holds.ttl, step.state.user_id, TimerKind.HOLD_EXPIRY, hold_id))
        return
    hold_id = cmd.hold_id or ""
    d.hold_id = hold_id
    hold = book.holds.get(hold_id)
    if hold is None or hold.status != "held":
        d.refused = "hold_not_open"
        return
    if cmd.action == "release" or at >= hold.expires_at:
        tx = book.release(hold_id, step.id("release"), at)
        d.refused = None if cmd.action == "release" else "hold_expired"
    else:
        tx = book.confirm(hold_id, step.id("confirm"), at)
        if tx is not None:
            d.outputs.append(
                PointsRedeemed(
                    id=tx.id,
                    user_id=step.state.user_id,
                    at=at,
                    config_version=step.cfg.version,
                    hold_id=hold_id,
                    points=hold.amount,
                )
            )
    if tx is not None:
        d.transactions.append(tx)


def _earn(step: Step, rule: EarningRule, facts: Facts, at: datetime, reference: str | None) -> None:
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


def _pay_referral(step: Step, at: datetime) -> None:
    state, ref = step.state, step.cfg.referrals
    if ref is None or not referrals.payable(state.referral, state.activated_at):
        return
    referrer = state.referral.referrer
    assert referrer is not None
    state.referral.paid = True
    when = max(at, state.activated_at) if state.activated_at else at
    if step.award(REFEREE_RULE, ref.referee_points, when) is not None:
        step.decision.outputs.append(
            _referral_output(
                step, state.user_id, "referee", referrer, state.user_id, ref.referee_points, when
            )
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


def _referral_output(
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
    )


def _badges(step: Step, earned: list[badges.BadgeAward], at: datetime) -> None:
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
                badge_id=award.badge.id,
                times=award.times,
                points=award.badge.points,
            )
        )


def _finish(step: Step, at: datetime) -> None:
    state, cfg = step.state, step.cfg
    state.as_of = at if state.as_of is None else max(at, state.as_of)
    if cfg.tiers is not None:
        state.earned = prune(state.earned, state.as_of, cfg.tiers)
        review = next_review(state.tier, cfg.tiers)
        if review is not None:
            step.decision.timers.append(Timer(review, state.user_id, TimerKind.TIER_REVIEW, state.user_id))
    prune_caps(state, state.as_of, user_zone(state, cfg))
    state.book.prune()


def _tier_name(step: Step) -> str | None:
    tiers = step.cfg.tiers
    return tiers.levels[step.state.tier.level].name if tiers else None


def _scalar(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value)


def _reference(rule: EarningRule, event: Event) -> str | None:
    return _scalar(event.properties.get(rule.reversed_by.match)) if rule.reversed_by else None
