"""Referrals: who referred a user, and when both sides are paid.

- A referral is claimed by the configured event carrying the referrer's id in a property.
- At most one referrer per referee: the first accepted claim wins; later claims change nothing.
- No self-referral (the referrer is the user, by user id or anonymous id) and no cycle: a claim
  is refused if the referee already appears among the referrer's own referrers
  (A refers B, then B claims to refer A: refused).
- Paid once, to both, only after the referee activates, and only if the claim was made before
  the activation (a referral claimed after the fact pays nothing). The referee's side is paid in
  the referee's decision; the referrer's side is a `ForeignAward` applied to the referrer's
  state (`decide.apply_foreign_award`), with ids derived from the same input, so it is paid once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.rewards.config import RewardsConfig
from services.rewards.domain.state import ReferralState
from shared.events import Event


@dataclass(frozen=True, slots=True)
class ForeignAward:
    """Points a decision owes another user (the referrer), to be applied to that user's state
    in the same transaction. `award_id` is the lot and transaction id, so applying it twice
    books it once."""

    user_id: str
    rule_id: str
    points: int
    award_id: str
    at: datetime
    referrer_id: str
    referee_id: str


def claimed_referrer(event: Event, cfg: RewardsConfig) -> str | None:
    """The referrer id an event claims, if it is the referral event and names one."""
    ref = cfg.referrals
    if ref is None or event.type != "track" or event.event != ref.event:
        return None
    value = event.properties.get(ref.referrer_property)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text or None


def accept_claim(referral: ReferralState, event: Event, referrer: str, chain: tuple[str, ...]) -> bool:
    """Record `referrer` as the user's referrer if allowed; mutates `referral`. Returns whether
    the claim was accepted (`referral.refused` says why not, for the first refused claim)."""
    if referral.referrer is not None:
        return False
    own_ids = {i for i in (event.user_id, event.anonymous_id) if i}
    if referrer in own_ids:
        referral.refused = referral.refused or "self_referral"
        return False
    if own_ids & set(chain):
        referral.refused = referral.refused or "referral_cycle"
        return False
    referral.referrer = referrer
    referral.claimed_at = event.timestamp
    return True


def payable(referral: ReferralState, activated_at: datetime | None) -> bool:
    """Whether the referral is due now: a referrer, an activation after the claim, not paid."""
    return (
        referral.referrer is not None
        and not referral.paid
        and activated_at is not None
        and referral.claimed_at is not None
        and referral.claimed_at <= activated_at
    )
