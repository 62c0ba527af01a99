"""Whole journeys through `decide`: the ledger invariants hold for every user at every step, the
decisions are deterministic, and the stored form of the state loses nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings

from services.rewards.domain.ledger import Account, AccountKind, Transaction, balances_from
from services.rewards.domain.simulate import Replay
from services.rewards.domain.state_json import from_json, to_json
from tests.unit.rewards.journeys import JOURNEYS, play
from tests.unit.rewards.support import T0, example_config

CFG = example_config()


def run(journey: list[Any], *, until_days: int = 0) -> Replay:
    r = Replay(CFG)
    r.keep_decisions = True
    play(r, journey)
    if until_days:
        r.advance(T0 + timedelta(days=until_days))
    return r


@settings(max_examples=80, deadline=None)
@given(JOURNEYS)
def test_balances_always_equal_the_sum_of_entries_and_are_never_negative(journey: list[Any]) -> None:
    r = run(journey, until_days=400)
    txs: list[Transaction] = [t for d in r.decisions for t in d.transactions]
    assert len({t.id for t in txs}) == len(txs)  # every transaction id is unique
    sums = balances_from(txs)
    for user, state in r.states.items():
        bal = state.book.balances
        assert bal.available == sums.get(Account.user(AccountKind.AVAILABLE, user), 0) >= 0
        assert bal.pending == sums.get(Account.user(AccountKind.PENDING, user), 0) >= 0
        assert bal.held == sums.get(Account.user(AccountKind.HELD, user), 0) >= 0
        assert bal.debt == sums.get(Account.user(AccountKind.DEBT, user), 0) <= 0
        # 400 days on, everything earned has expired or been spent, reversed or redeemed.
        assert bal.available == bal.pending == bal.held == 0
    budget_spent = -sums.get(Account.rule("winback"), 0)
    assert r.budgets["winback"] == 1_000_000 - budget_spent


@settings(max_examples=60, deadline=None)
@given(JOURNEYS)
def test_the_same_history_gives_the_same_decisions(journey: list[Any]) -> None:
    first, second = run(journey, until_days=30), run(journey, until_days=30)
    assert [t for d in first.decisions for t in d.transactions] == [
        t for d in second.decisions for t in d.transactions
    ]
    assert [o for d in first.decisions for o in d.outputs] == [o for d in second.decisions for o in d.outputs]


@settings(max_examples=30, deadline=None)
@given(JOURNEYS, JOURNEYS)
def test_the_stored_state_continues_exactly_like_the_live_one(head: list[Any], tail: list[Any]) -> None:
    live = run(head)
    stored = run(head)
    for user, state in stored.states.items():
        restored = from_json(to_json(state))
        assert restored == state
        stored.states[user] = restored
    start = T0 + timedelta(minutes=sum(gap for gap, _ in head))
    mark = len(live.decisions), len(stored.decisions)
    play(live, tail, start=start, prefix="t")
    play(stored, tail, start=start, prefix="t")
    live_out = [o for d in live.decisions[mark[0] :] for o in d.outputs]
    stored_out = [o for d in stored.decisions[mark[1] :] for o in d.outputs]
    assert live_out == stored_out
    assert live.states == stored.states
