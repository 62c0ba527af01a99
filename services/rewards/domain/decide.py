"""`decide(state, input, cfg, now) -> Decision`: the one decision function of the rewards service.

The live consumer, the timer worker, the redemption API and `simulate` all call exactly this, so
a replay awards what the live service awarded. Pure: time comes in as `now` (and the input's own
instant), the per-rule budgets' remaining amounts come in as `budgets` (the adapter reads them
under a row lock; see `budgeted_rules`), and everything to store or send comes back in the
`Decision`. The state is updated in place and returned in the decision.

The instant of an input is its event `timestamp` (clamped to `now` when beyond
`now + future_tolerance`), a lifecycle event's `at`, a timer's `due_at`, a command's or an
adjustment's `at`.
Tier reviews due by that instant are applied first, each at its own instant.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from services.rewards.config import EarningRule, RewardsConfig
from services.rewards.domain import badges, referrals
from services.rewards.domain.adjustment import apply_adjustment
from services.rewards.domain.awards import Decision, MissingBudget, Step
from services.rewards.domain.conditions import Facts, all_hold
from services.rewards.domain.earning import award_badges, check_in_streak, earn, pay_referral, referral_output
from services.rewards.domain.inputs import (
    AdjustmentInput,
    EventInput,
    LifecycleInput,
    RewardsInput,
    Timer,
    TimerInput,
    TimerKind,
)
from services.rewards.domain.redemption import apply_command
from services.rewards.domain.referrals import ForeignAward
from services.rewards.domain.rules import matching, prune_caps, user_zone, valid_zone
from services.rewards.domain.state import UserRewardsState
from services.rewards.domain.tiers import next_review, prune
from services.rewards.domain.timer_effects import apply_timer
from shared.events import Event

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
    if isinstance(inp, AdjustmentInput) and inp.reverses is not None:
        # The rule of the reversed award is only known from the user's lots; every budgeted
        # rule is named so the adapter locks whichever it is (adjustments are rare).
        reversing += [r for r in cfg.rules if r.budget is not None]
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
    review_before = next_review(state.tier, cfg.tiers) if cfg.tiers else None
    at = inp.at
    if at > now + cfg.future_tolerance:
        at = now
    step.catch_up_tiers(max(at, state.as_of) if state.as_of else at)
    if isinstance(inp, EventInput):
        _on_event(step, inp, at)
    elif isinstance(inp, LifecycleInput):
        _on_lifecycle(step, inp, at)
    elif isinstance(inp, TimerInput):
        apply_timer(step, inp.timer)
    elif isinstance(inp, AdjustmentInput):
        apply_adjustment(step, inp, at)
    else:
        apply_command(step, inp, at)
    # A timer does not move the user's clock: during a backlog a timer due at T can fire before
    # the user's events of T - 8 days are consumed, which must still be checked against their caps.
    _finish(step, at, review_before, advance=not isinstance(inp, TimerInput))
    return step.decision


def apply_foreign_award(state: UserRewardsState | None, award: ForeignAward, cfg: RewardsConfig) -> Decision:
    """Book the referrer's side of a referral on the referrer's state (once per `award_id`)."""
    state = state or UserRewardsState.new(award.user_id)
    step = Step(state, cfg, award.award_id, {}, Decision(state))
    review_before = next_review(state.tier, cfg.tiers) if cfg.tiers else None
    step.catch_up_tiers(max(award.at, state.as_of) if state.as_of else award.at)
    if step.award(award.rule_id, award.points, award.at, award_id=award.award_id) is not None:
        step.decision.outputs.append(
            referral_output(
                step, award.user_id, "referrer", award.referrer_id, award.referee_id, award.points, award.at
            )
        )
    _finish(step, award.at, review_before)
    return step.decision


def _on_event(step: Step, inp: EventInput, at: datetime) -> None:
    event, state, cfg = inp.event, step.state, step.cfg
    state.traits.update(event.traits)  # `Event.from_wire` falls back to `context.traits`
    zone_name = valid_zone(event.traits.get("timezone")) or valid_zone(event.context.get("timezone"))
    if zone_name:
        state.timezone = zone_name
    if event.type != "track" or event.event is None:
        return
    referrer = referrals.claimed_referrer(event, cfg)
    if referrer is not None and referrals.accept_claim(state.referral, event, referrer, inp.referrer_chain):
        pay_referral(step, at)
    facts = Facts(event.properties, state.traits, state.stage, _tier_name(step), state.segments)
    for rule in matching(cfg, event=event.event):
        if all_hold(rule.conditions, facts):
            earn(step, rule, facts, at, _reference(rule, event))
    for rule in cfg.rules:
        if rule.reversed_by is not None and rule.reversed_by.event == event.event:
            ref = _scalar(event.properties.get(rule.reversed_by.match))
            lot = state.book.find_by_reference(rule.id, ref) if ref is not None else None
            if lot is not None:
                step.reverse(lot, at, f"{event.event}")
    if cfg.streak is not None and event.event == cfg.streak.event:
        check_in_streak(step, at)
    award_badges(step, badges.on_event(state, event.event, event.properties, cfg), at)


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
            earn(step, rule, facts, at, None)
    pay_referral(step, at)


def _finish(step: Step, at: datetime, review_before: datetime | None, *, advance: bool = True) -> None:
    """Advance `as_of` (unless `advance` is false and it is set), arm the tier review if it
    moved, and drop what can no longer matter."""
    state, cfg = step.state, step.cfg
    if advance or state.as_of is None:
        state.as_of = at if state.as_of is None else max(at, state.as_of)
    if cfg.tiers is not None:
        state.earned = prune(state.earned, state.as_of, cfg.tiers)
        review = next_review(state.tier, cfg.tiers)
        if review is not None and review != review_before:
            step.decision.timers.append(Timer(review, state.user_id, TimerKind.TIER_REVIEW, state.user_id))
    prune_caps(state, state.as_of, user_zone(state, cfg))
    state.book.prune(state.as_of)


def _tier_name(step: Step) -> str | None:
    tiers = step.cfg.tiers
    return tiers.levels[step.state.tier.level].name if tiers else None


def _scalar(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value)


def _reference(rule: EarningRule, event: Event) -> str | None:
    return _scalar(event.properties.get(rule.reversed_by.match)) if rule.reversed_by else None
