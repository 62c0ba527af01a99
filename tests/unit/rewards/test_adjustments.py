"""Manual adjustments through `decide`: a credit is a balanced award of the `adjustment` rule; a
debit is a linked reversal of the award it names, never more than that award, with what was
already spent recorded as owed and repaid from later awards; the same input id is one adjustment."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import count

from hypothesis import given, settings
from hypothesis import strategies as st

from services.rewards.domain.adjustment import ADJUSTMENT_RULE
from services.rewards.domain.awards import Decision
from services.rewards.domain.inputs import AdjustmentInput
from services.rewards.domain.ledger import Account, AccountKind, Transaction, TxKind, balances_from
from services.rewards.domain.outputs import PointsAwarded, PointsReversed
from services.rewards.domain.simulate import Replay
from services.rewards.domain.state_json import from_dict, from_json, to_dict, to_json
from shared.ids import input_id, output_id
from tests.unit.rewards.support import T0, command, day, example_config, of_type, reserve, track

_keys = count()


def adjust(
    points: int, at: datetime, *, reverses: str | None = None, user: str = "u1", key: str | None = None
) -> AdjustmentInput:
    k = key or f"adj-{next(_keys)}"
    return AdjustmentInput(
        input_id("rewards.adjustments", user, k), user, at, points, "support ticket", "ops", reverses
    )


def replay() -> Replay:
    r = Replay(example_config())
    r.keep_decisions = True
    return r


def spend(r: Replay, points: int, at: datetime) -> None:
    hold = r.feed(reserve(points, at))
    assert hold.refused is None and hold.hold_id is not None
    r.feed(command("confirm", hold.hold_id, at + timedelta(seconds=1)))


def all_transactions(r: Replay) -> list[Transaction]:
    return [tx for d in r.decisions for tx in d.transactions]


def lesson_lot(d: Decision) -> str:
    (award,) = of_type(d.outputs, PointsAwarded)
    return str(award.lot_id)


def test_a_positive_adjustment_credits_a_lot_of_the_adjustment_rule_in_a_balanced_transaction() -> None:
    r = replay()
    inp = adjust(120, T0)
    d = r.feed(inp)
    lot_id = output_id(inp.input_id, ADJUSTMENT_RULE)
    assert d.refused is None and d.hold_id == lot_id
    (lot,) = d.lots
    assert (lot.id, lot.rule_id, lot.amount, lot.remaining, lot.pending) == (
        lot_id,
        "adjustment",
        120,
        120,
        False,
    )
    (tx,) = d.transactions
    assert (tx.id, tx.kind, tx.lot_id) == (lot_id, TxKind.AWARD, lot_id)
    assert sum(e.amount for e in tx.entries) == 0
    assert tx.amount_for(Account.user(AccountKind.AVAILABLE, "u1")) == 120
    assert tx.amount_for(Account.rule(ADJUSTMENT_RULE)) == -120
    (award,) = of_type(d.outputs, PointsAwarded)
    assert (award.rule_id, award.points, award.balance, award.source_id) == (
        "adjustment",
        120,
        120,
        inp.input_id,
    )
    assert r.states["u1"].book.balances.available == 120
    assert r.states["u1"].earned == []  # a credit does not count towards tiers


def test_a_negative_adjustment_takes_back_part_of_the_named_award_only() -> None:
    r = replay()
    first = lesson_lot(r.feed(track("Lesson Completed", T0)))
    r.feed(track("Lesson Completed", T0 + timedelta(minutes=1)))
    inp = adjust(-4, day(1), reverses=first)
    d = r.feed(inp)
    assert d.refused is None and d.hold_id == output_id(inp.input_id, f"reverse:{first}")
    (tx,) = d.transactions
    assert (tx.kind, tx.reverses, tx.lot_id, tx.rule_id) == (
        TxKind.REVERSAL,
        first,
        first,
        "lesson_completed",
    )
    assert sum(e.amount for e in tx.entries) == 0
    assert tx.amount_for(Account.rule("lesson_completed")) == 4
    (out,) = of_type(d.outputs, PointsReversed)
    assert (out.reverses, out.points, out.shortfall, out.reason) == (first, 4, 0, "support ticket")
    book = r.states["u1"].book
    assert (book.lots[first].remaining, book.lots[first].reversed) == (6, 4)
    assert (book.balances.available, book.balances.debt) == (16, 0)


def test_reversing_more_than_the_award_is_capped_at_the_award() -> None:
    r = replay()
    lot = lesson_lot(r.feed(track("Lesson Completed", T0)))
    r.feed(adjust(500, T0 + timedelta(minutes=1)))  # plenty of other points to take from
    d = r.feed(adjust(-1000, day(1), reverses=lot))
    assert d.refused is None
    (out,) = of_type(d.outputs, PointsReversed)
    assert (out.points, out.shortfall) == (10, 0)  # the 10 the award gave, not 1000
    assert r.states["u1"].book.balances.available == 500  # the other credit is untouched
    again = r.feed(adjust(-1, day(2), reverses=lot))
    assert again.refused == "nothing_to_reverse" and again.transactions == []
    assert r.states["u1"].book.balances.available == 500


def test_adjustments_that_cannot_apply_are_refused_without_moving_points() -> None:
    r = replay()
    r.feed(track("Lesson Completed", T0))
    for inp, why in [
        (adjust(0, day(1)), "invalid_amount"),
        (adjust(-5, day(1)), "invalid_amount"),  # a debit names the award it corrects
        (adjust(-5, day(1), reverses="no-such-lot"), "unknown_award"),
    ]:
        d = r.feed(inp)
        assert (d.refused, d.transactions, d.outputs) == (why, [], [])
    assert r.states["u1"].book.balances.available == 10


def test_a_shortfall_after_spending_is_owed_and_repaid_before_later_awards_are_spendable() -> None:
    r = replay()
    credit = r.feed(adjust(100, T0)).hold_id
    assert credit is not None
    spend(r, 90, T0 + timedelta(minutes=1))
    d = r.feed(adjust(-100, day(1), reverses=credit))
    (out,) = of_type(d.outputs, PointsReversed)
    assert (out.points, out.shortfall, out.balance) == (100, 90, 0)
    (tx,) = d.transactions
    assert tx.amount_for(Account.user(AccountKind.DEBT, "u1")) == -90
    bal = r.states["u1"].book.balances
    assert (bal.available, bal.debt) == (0, -90)
    repay = r.feed(track("Lesson Completed", day(2)))
    assert [t.kind for t in repay.transactions] == [TxKind.AWARD, TxKind.DEBT_REPAYMENT]
    assert (bal.available, bal.debt) == (0, -80)
    assert r.feed(reserve(1, day(2, 1))).refused == "insufficient_balance"
    for i in range(5):
        r.feed(track("Lesson Completed", day(3, i)))
    r.feed(adjust(40, day(4)))
    assert (bal.available, bal.debt) == (10, 0)  # 50 + 40 earned, 80 repaid first
    assert balances_from(all_transactions(r))[Account.user(AccountKind.DEBT, "u1")] == 0


def test_the_same_positive_adjustment_applied_twice_is_one_credit() -> None:
    r = replay()
    inp = adjust(50, T0, key="ticket-1")
    first = r.feed(inp)
    second = r.feed(inp, now=T0 + timedelta(minutes=5))
    assert first.hold_id == second.hold_id == output_id(inp.input_id, ADJUSTMENT_RULE)
    assert (second.refused, second.transactions, second.outputs) == (None, [], [])
    assert r.states["u1"].book.balances.available == 50
    other = r.feed(adjust(50, T0, key="ticket-2"))
    assert other.hold_id != first.hold_id
    assert r.states["u1"].book.balances.available == 100


def test_the_same_negative_adjustment_applied_twice_is_one_reversal() -> None:
    r = replay()
    credit = r.feed(adjust(100, T0)).hold_id
    inp = adjust(-30, day(1), reverses=credit, key="ticket-3")
    first = r.feed(inp)
    second = r.feed(inp, now=day(1, 1))
    assert first.hold_id == second.hold_id
    assert r.states["u1"].book.balances.available == 70
    ids = [tx.id for tx in all_transactions(r)]
    assert len(ids) == len(set(ids))
    assert (second.refused, second.transactions, second.outputs) == (None, [], [])
    # The guard survives the store: the state as saved and loaded still knows the reversal.
    r.states["u1"] = from_json(to_json(r.states["u1"]))
    third = r.feed(inp, now=day(1, 2))
    assert (third.refused, third.transactions) == (None, [])
    assert r.states["u1"].book.balances.available == 70
    # A different adjustment against the same award still reverses.
    r.feed(adjust(-20, day(2), reverses=credit, key="ticket-4"))
    assert r.states["u1"].book.balances.available == 50


def test_reversing_an_adjustment_credit_leaves_tier_progress_alone() -> None:
    r = replay()
    r.feed(track("Lesson Completed", T0))
    credit = r.feed(adjust(100, T0 + timedelta(minutes=1))).hold_id
    r.feed(adjust(-30, day(1), reverses=credit))
    assert sum(e.points for e in r.states["u1"].earned) == 10


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("lesson"), st.integers(0, 0)),
        st.tuples(st.just("credit"), st.integers(1, 300)),
        st.tuples(st.just("spend"), st.integers(1, 200)),
        st.tuples(st.just("debit"), st.integers(1, 400)),
        st.tuples(st.just("wait"), st.integers(1, 24 * 60)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(OPS, st.data())
def test_random_awards_spends_and_adjustments_keep_balances_equal_to_the_entries(
    ops: list[tuple[str, int]], data: st.DataObject
) -> None:
    r = replay()
    now = T0
    awarded: dict[str, int] = {}
    # Keys from the example's own step number: hypothesis replays an example and must see the same ids.
    for step, (kind, n) in enumerate(ops):
        now += timedelta(minutes=1)
        key = f"op-{step}"
        if kind == "lesson":
            d = r.feed(track("Lesson Completed", now, message_id=key))
        elif kind == "credit":
            d = r.feed(adjust(n, now, key=key))
        elif kind == "spend":
            d = r.feed(reserve(n, now, key=key))
            if d.hold_id is not None and d.refused is None:
                r.feed(
                    command(
                        data.draw(st.sampled_from(["confirm", "release"])), d.hold_id, now, key=f"{key}-c"
                    )
                )
        elif kind == "debit" and awarded:
            lot = data.draw(st.sampled_from(sorted(awarded)))
            d = r.feed(adjust(-n, now, reverses=lot, key=key))
            assert d.refused in (None, "nothing_to_reverse")
        else:
            now += timedelta(minutes=n)
            r.advance(now)
            continue
        awarded.update({lot.id: lot.amount for lot in d.lots})
        txs = all_transactions(r)
        sums = balances_from(txs)
        bal = r.states["u1"].book.balances
        assert bal.available == sums.get(Account.user(AccountKind.AVAILABLE, "u1"), 0)
        assert bal.pending == sums.get(Account.user(AccountKind.PENDING, "u1"), 0)
        assert bal.held == sums.get(Account.user(AccountKind.HELD, "u1"), 0)
        assert bal.debt == sums.get(Account.user(AccountKind.DEBT, "u1"), 0)
        assert bal.available >= 0 and bal.held >= 0 and bal.debt <= 0
        book = r.states["u1"].book
        assert all(lot.remaining >= 0 for lot in book.lots.values())
        assert bal.available == sum(lot.remaining for lot in book.lots.values() if not lot.pending)
        assert all(sum(e.amount for e in tx.entries) == 0 for tx in txs)
        taken: dict[str, int] = {}
        for tx in txs:
            if tx.kind is TxKind.REVERSAL and tx.reverses is not None:
                taken[tx.reverses] = taken.get(tx.reverses, 0) + tx.amount_for(Account.rule(tx.rule_id or ""))
        assert all(n <= awarded[lot_id] for lot_id, n in taken.items())


def test_a_state_saved_before_reversal_ids_were_kept_still_loads() -> None:
    r = replay()
    r.feed(adjust(100, T0))
    saved = to_dict(r.states["u1"])
    saved["lots"] = [row[:11] for row in saved["lots"]]  # the layout without reversal ids
    loaded = from_dict(saved)
    assert [lot.reversals for lot in loaded.book.lots.values()] == [[]]
    assert loaded.book.balances.available == 100
