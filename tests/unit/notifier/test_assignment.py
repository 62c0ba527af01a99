"""Holdout and variants by a stable hash of (campaign, user): the same everywhere and always, the
holdout share within statistical tolerance, and the two decisions independent."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from math import sqrt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notifier.domain.assignment import HOLDOUT, assign, unit_hash

USERS = [f"user-{i}" for i in range(5_000)]
VARIANTS = [("a", 0.5), ("b", 0.5)]


def test_assignment_is_pinned_so_a_deploy_never_reshuffles_users() -> None:
    # first 8 bytes of SHA-256("holdout" US "at_risk_winback" US "user-1"), big-endian, / 2**64
    digest = hashlib.sha256(b"holdout\x1fat_risk_winback\x1fuser-1").digest()
    assert unit_hash("holdout", "at_risk_winback", "user-1") == int.from_bytes(digest[:8], "big") / 2**64
    assert unit_hash("holdout", "at_risk_winback", "user-1") == pytest.approx(0.6845553621664241)
    groups = [assign("at_risk_winback", f"user-{i}", 0.1, VARIANTS) for i in range(12)]
    assert groups == ["b", "a", "b", "b", "b", "b", "a", "a", "a", "b", "b", "a"]


def test_same_groups_in_another_process_with_another_hash_seed() -> None:
    code = (
        "from services.notifier.domain.assignment import assign;"
        "print([assign('c', f'user-{i}', 0.2, [('a', 0.5), ('b', 0.5)]) for i in range(50)])"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            cwd=str(Path(__file__).resolve().parents[3]),
        ).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1
    assert runs.pop() == str([assign("c", f"user-{i}", 0.2, VARIANTS) for i in range(50)]) + "\n"


@settings(max_examples=15, deadline=None)
@given(campaign=st.text(min_size=1, max_size=20), holdout=st.floats(0.0, 0.5))
def test_holdout_share_within_tolerance(campaign: str, holdout: float) -> None:
    held = sum(assign(campaign, u, holdout, VARIANTS) == HOLDOUT for u in USERS)
    sd = sqrt(holdout * (1 - holdout) / len(USERS))
    assert abs(held / len(USERS) - holdout) <= 5 * sd + 1e-9


def test_variant_weights_are_respected_among_treated_users() -> None:
    groups = [assign("c", u, 0.1, [("a", 0.2), ("b", 0.8)]) for u in USERS]
    treated = [g for g in groups if g != HOLDOUT]
    share_a = treated.count("a") / len(treated)
    assert abs(share_a - 0.2) < 5 * sqrt(0.2 * 0.8 / len(treated))


def test_changing_the_holdout_share_never_changes_a_treated_users_variant() -> None:
    small = {u: assign("c", u, 0.05, VARIANTS) for u in USERS[:2000]}
    large = {u: assign("c", u, 0.20, VARIANTS) for u in USERS[:2000]}
    for user, group in large.items():
        if group != HOLDOUT:
            assert small[user] == group  # still treated, same copy
    assert {u for u, g in small.items() if g == HOLDOUT} <= {u for u, g in large.items() if g == HOLDOUT}


def test_campaigns_hold_out_different_users() -> None:
    one = {u for u in USERS if assign("one", u, 0.1, VARIANTS) == HOLDOUT}
    two = {u for u in USERS if assign("two", u, 0.1, VARIANTS) == HOLDOUT}
    assert len(one & two) < 0.025 * len(USERS)  # independent: about 1 %, not 10 %


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="holdout"):
        assign("c", "u", 1.0, VARIANTS)
    with pytest.raises(ValueError, match="variant"):
        assign("c", "u", 0.1, [])
