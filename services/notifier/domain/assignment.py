"""Holdout and variant assignment by a stable hash of (campaign, user).

A user's group in a campaign is a pure function of the campaign's name, the user id and the
campaign's holdout share and variant weights: the same on every replica, after every restart and
on every replay (SHA-256, never Python's salted `hash()`). Two independent hashes are used — one
decides holdout, the other the variant — so changing the holdout share never reshuffles which
variant a treated user sees, and changing variant weights never moves users in or out of holdout.
Renaming a campaign starts a new experiment: its users are assigned afresh.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

HOLDOUT: Final = "holdout"
"""The group name of users held out of a campaign (they receive nothing; their goals count)."""
_SCALE: Final = float(2**64)
_SEP: Final = "\x1f"


def unit_hash(purpose: str, campaign: str, user_id: str) -> float:
    """A uniform number in [0, 1) from SHA-256 of (purpose, campaign, user)."""
    digest = hashlib.sha256(_SEP.join((purpose, campaign, user_id)).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def assign(campaign: str, user_id: str, holdout: float, variants: Sequence[tuple[str, float]]) -> str:
    """`HOLDOUT` or the name of the variant this user gets in `campaign`.

    `holdout` is the share in [0, 1); `variants` are (name, weight) pairs with weights summing to 1.
    """
    if not 0 <= holdout < 1:
        raise ValueError("holdout must be in [0, 1)")
    if not variants:
        raise ValueError("a campaign needs at least one variant")
    if unit_hash("holdout", campaign, user_id) < holdout:
        return HOLDOUT
    point = unit_hash("variant", campaign, user_id) * sum(w for _, w in variants)
    cumulative = 0.0
    for name, weight in variants:
        cumulative += weight
        if point < cumulative:
            return name
    return variants[-1][0]  # rounding at the very top of the range
