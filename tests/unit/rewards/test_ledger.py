"""The ledger and the points book: balanced transactions, balances equal to the sum of entries,
never-negative balances, earliest-expiry-first spending, expiry at most once, bounded reversals."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.rewards.domain.book import InsufficientBalance, PointsBook
from services.rewards.domain.ledger import (
    REDEMPTION_SINK,
    Account,
    AccountKind,
    LedgerEntry,
    Lot,
    Transaction,
    TxKind,
    UnbalancedTransaction,
    balances_from,
    transfer,
)
from tests.unit.rewards.support import T0

USER = "u1"


def test_an_unbalanced_transaction_cannot_be_built() -> None:
    a, b = Account.user(AccountKind.AVAILABLE, USER), Account.rule("r")
    with pytest.raises(UnbalancedTransaction, match="sums to 1"):
        Transaction("t", TxKind.AWARD, USER, T0, (LedgerEntry(a, 5), LedgerEntry(b, -4)))
    with pytest.raises(UnbalancedTransaction, match="two entries"):
        Transaction("t", TxKind.AWARD, USER, T0, (LedgerEntry(a, 0),))
    with pytest.raises(UnbalancedTransaction, match="non-zero ints"):
        Transaction("t", TxKind.AWARD, USER, T0, (LedgerEntry(a, 0), LedgerEntry(b, 0)))
    with pytest.raises(UnbalancedTransaction, match="non-zero ints"):
        Transaction("t", TxKind.AWARD, USER, T0, (LedgerEntry(a, 1.5), LedgerEntry(b, -1.5)))  # type: ignore[arg-type]
    assert transfer("t", TxKind.AWARD, USER, T0, [(b, a, 0)]) is None


def test_user_accounts_are_only_user_kinds() -> None:
    with pytest.raises(ValueError, match="not a user account"):
        Account.user(AccountKind.RULE, USER)


@dataclass
class World:
    """A book driven by random operations, with every transaction it ever posted."""

    book: PointsBook = field(default_factory=lambda: PointsBook(USER))
    now: datetime = T0
    txs: list[Transaction] = field(default_factory=list)
    awarded: dict[str, int] = field(default_factory=dict)
    n: int = 0

    def next_id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n}"

    def post(self, tx: Transaction | None) -> None:
        if tx is not None:
            self.txs.append(tx)


def _pick(keys: list[str], index: int) -> str | None:
    return sorted(keys)[index % len(keys)] if keys else None


def apply_op(w: World, op: tuple[str, int, int, bool]) -> None:
    kind, a, b, flag = op
    book = w.book
    if kind == "award":
        lot_id = w.next_id("lot")
        expires = w.now + timedelta(hours=b) if b else None
        lot = Lot(lot_id, f"rule{a % 3}", a, a, w.now, expires, pending=flag)
        w.awarded[lot_id] = a
        w.txs += book.credit(lot, w.now)
    elif kind == "advance":
        w.now += timedelta(hours=a)
    elif kind == "hold":
        spendable = sorted((x for x in book.lots.values() if x.spendable(w.now)), key=Lot.spend_order)
        before = {x.id: x.remaining for x in spendable}
        hold_id = w.next_id("hold")
        try:
            w.post(book.hold(hold_id, a, w.now, w.now + timedelta(hours=b + 1)))
        except InsufficientBalance:
            assert sum(before.values()) < a
            return
        _assert_earliest_expiry_first(spendable, before, book.holds[hold_id].allocations, a)
    elif kind in ("confirm", "release"):
        picked = _pick(list(book.holds), a)
        if picked is not None:
            op_fn = book.confirm if kind == "confirm" else book.release
            w.post(op_fn(picked, w.next_id(kind), w.now))
    else:
        lot_id = _pick(list(book.lots), a) or ""
        if not lot_id:
            return
        if kind == "expire":
            w.post(book.expire(lot_id, w.next_id("exp"), w.now))
        elif kind == "reverse":
            w.post(book.reverse(lot_id, w.next_id("rev"), w.now, amount=b or None).transaction)
        elif kind == "release_pending":
            w.txs += book.release_pending(lot_id, w.next_id("rel"), w.now)
    if flag and kind != "award":
        book.prune(w.now)


def _assert_earliest_expiry_first(
    spendable: list[Lot], before: dict[str, int], allocations: list[tuple[str, int]], amount: int
) -> None:
    expected: list[tuple[str, int]] = []
    left = amount
    for lot in spendable:
        if left == 0:
            break
        n = min(left, before[lot.id])
        expected.append((lot.id, n))
        left -= n
    assert allocations == expected


def assert_invariants(w: World) -> None:
    book = w.book
    for tx in w.txs:
        assert sum(e.amount for e in tx.entries) == 0
    sums = balances_from(w.txs)
    bal = book.balances
    assert bal.available == sums.get(Account.user(AccountKind.AVAILABLE, USER), 0)
    assert bal.pending == sums.get(Account.user(AccountKind.PENDING, USER), 0)
    assert bal.held == sums.get(Account.user(AccountKind.HELD, USER), 0)
    assert bal.debt == sums.get(Account.user(AccountKind.DEBT, USER), 0)
    assert bal.available >= 0 and bal.pending >= 0 and bal.held >= 0 and bal.debt <= 0
    assert all(x.remaining >= 0 for x in book.lots.values())
    assert bal.available == sum(x.remaining for x in book.lots.values() if not x.pending)
    assert bal.pending == sum(x.remaining for x in book.lots.values() if x.pending)
    assert bal.held == sum(h.amount for h in book.holds.values() if h.status == "held")
    expired: dict[str, int] = {}
    reversed_: dict[str, int] = {}
    for tx in w.txs:
        if tx.kind is TxKind.EXPIRY:
            assert tx.lot_id not in expired, "a lot expired twice"
            expired[tx.lot_id or ""] = tx.amount_for(Account(AccountKind.EXPIRY))
        if tx.kind is TxKind.REVERSAL:
            assert tx.reverses == tx.lot_id
            reversed_[tx.lot_id or ""] = reversed_.get(tx.lot_id or "", 0) + tx.amount_for(
                Account.rule(tx.rule_id or "")
            )
    for lot_id, n in reversed_.items():
        assert n <= w.awarded[lot_id], "a reversal took back more than the award"
    for lot_id, n in expired.items():
        assert n <= w.awarded[lot_id]
    # Points are conserved: what rule accounts issued is everywhere else.
    issued = -sum(n for acct, n in sums.items() if acct.kind is AccountKind.RULE)
    elsewhere = sum(n for acct, n in sums.items() if acct.kind is not AccountKind.RULE)
    assert issued == elsewhere


OPS = st.one_of(
    st.tuples(st.just("award"), st.integers(1, 100), st.integers(0, 60), st.booleans()),
    st.tuples(st.just("advance"), st.integers(0, 48), st.just(0), st.just(False)),
    st.tuples(st.just("hold"), st.integers(1, 250), st.integers(0, 5), st.booleans()),
    st.tuples(
        st.sampled_from(["confirm", "release", "expire", "reverse", "release_pending"]),
        st.integers(0, 50),
        st.integers(0, 80),
        st.booleans(),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, max_size=60))
def test_random_operations_keep_every_ledger_invariant(ops: list[tuple[str, int, int, bool]]) -> None:
    w = World()
    for op in ops:
        apply_op(w, op)
        assert_invariants(w)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 1000), st.integers(1, 200), st.integers(1, 30))
def test_concurrent_reserves_succeed_exactly_floor_b_over_c(balance: int, cost: int, attempts: int) -> None:
    book = PointsBook(USER)
    if balance:
        book.credit(Lot("lot", "r", balance, balance, T0, None), T0)
    ok = 0
    for i in range(attempts):
        try:
            book.hold(f"h{i}", cost, T0, T0 + timedelta(minutes=15))
            ok += 1
        except InsufficientBalance:
            pass
    assert ok == min(attempts, balance // cost)
    assert book.balances.available == balance - ok * cost >= 0


def test_expiry_runs_once_and_only_when_due() -> None:
    book = PointsBook(USER)
    book.credit(Lot("a", "r", 30, 30, T0, T0 + timedelta(days=1)), T0)
    assert book.expire("a", "e0", T0) is None  # not due yet
    first = book.expire("a", "e1", T0 + timedelta(days=1))
    assert first is not None and first.amount_for(Account(AccountKind.EXPIRY)) == 30
    assert book.expire("a", "e2", T0 + timedelta(days=2)) is None
    assert book.balances.available == 0


def test_expiry_beside_a_spend_never_expires_a_spent_point() -> None:
    book = PointsBook(USER)
    book.credit(Lot("a", "r", 30, 30, T0, T0 + timedelta(days=1)), T0)
    book.hold("h", 20, T0, T0 + timedelta(hours=1))
    book.confirm("h", "c", T0)
    tx = book.expire("a", "e", T0 + timedelta(days=1))
    assert tx is not None and tx.amount_for(Account(AccountKind.EXPIRY)) == 10
    assert book.balances.available == 0


def test_a_hold_released_after_its_lot_expired_expires_instead() -> None:
    book = PointsBook(USER)
    book.credit(Lot("a", "r", 30, 30, T0, T0 + timedelta(days=1)), T0)
    book.hold("h", 30, T0, T0 + timedelta(days=2))
    assert book.expire("a", "e", T0 + timedelta(days=1)) is None  # all of it is held
    tx = book.release("h", "rel", T0 + timedelta(days=1, hours=1))
    assert tx is not None and tx.amount_for(Account(AccountKind.EXPIRY)) == 30
    assert (book.balances.available, book.balances.held) == (0, 0)


def test_confirm_moves_held_points_to_the_redemption_sink_once() -> None:
    book = PointsBook(USER)
    book.credit(Lot("a", "r", 50, 50, T0, None), T0)
    book.hold("h", 40, T0, T0 + timedelta(minutes=15))
    tx = book.confirm("h", "c", T0)
    assert tx is not None and tx.amount_for(REDEMPTION_SINK) == 40
    assert book.confirm("h", "c2", T0) is None
    assert book.release("h", "r", T0) is None
    assert (book.balances.available, book.balances.held) == (10, 0)


def test_a_reversal_of_spent_points_records_the_shortfall_and_later_awards_repay_it() -> None:
    book = PointsBook(USER)
    book.credit(Lot("a", "r", 100, 100, T0, None), T0)
    book.credit(Lot("b", "r", 30, 30, T0, None), T0)
    book.hold("h", 120, T0, T0 + timedelta(minutes=15))
    book.confirm("h", "c", T0)
    result = book.reverse("a", "rev", T0)
    assert (result.taken, result.shortfall) == (10, 90)  # 10 left in `b`, 90 already redeemed
    assert book.balances.debt == -90 and book.balances.available == 0
    assert book.reverse("a", "rev2", T0).transaction is None  # never more than the award
    txs = book.credit(Lot("c", "r", 50, 50, T0, None), T0)
    assert [t.kind for t in txs] == [TxKind.AWARD, TxKind.DEBT_REPAYMENT]
    assert (book.balances.available, book.balances.debt) == (0, -40)
    book.credit(Lot("d", "r", 50, 50, T0, None), T0)
    assert (book.balances.available, book.balances.debt) == (10, 0)
