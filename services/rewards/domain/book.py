"""One user's points book: balances, lots and holds, and the operations that move points.

Every operation returns the balanced `Transaction`s it posted (already applied to `balances`),
so the stored balances always equal the sum of the user's entries. Invariants kept here:
- `available == Σ remaining of spendable lots`, `pending == Σ remaining of pending lots`,
  `held == Σ amounts of open holds`; none of them is ever negative;
- spending (a hold) takes from lots earliest-expiry-first (lots that never expire last, ties by
  award time then id), and never from a pending, expired or past-due lot;
- a lot expires at most once, and only its unspent, unheld remainder;
- a reversal takes back at most what the award gave (minus what already expired): first from the
  lot itself, then from the user's other available points, and records the rest as debt, which
  later awards repay before the points become spendable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from services.rewards.domain.ledger import (
    EXPIRY_SINK,
    REDEMPTION_SINK,
    Account,
    AccountKind,
    Balances,
    Hold,
    Lot,
    Transaction,
    TxKind,
    transfer,
)

FINISHED_HOLDS_KEPT: Final = timedelta(days=1)


class InsufficientBalance(Exception):
    """A hold asked for more points than are available (the API answers 409)."""


@dataclass(frozen=True, slots=True)
class ReversalResult:
    transaction: Transaction | None
    taken: int
    shortfall: int


@dataclass(slots=True)
class PointsBook:
    """The user's balances, live lots and open holds. Operations mutate in place."""

    user_id: str
    balances: Balances = field(default_factory=Balances)
    lots: dict[str, Lot] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)

    def _acct(self, kind: AccountKind) -> Account:
        return Account.user(kind, self.user_id)

    def _post(self, tx: Transaction | None, out: list[Transaction]) -> None:
        if tx is not None:
            self.balances.apply(tx, self.user_id)
            out.append(tx)

    def credit(self, lot: Lot, at: datetime) -> list[Transaction]:
        """Award `lot` (new, `remaining == amount`) from its rule's account, then repay debt."""
        if lot.id in self.lots or lot.remaining != lot.amount or lot.amount <= 0:
            raise ValueError(f"lot {lot.id} is already booked or malformed")
        self.lots[lot.id] = lot
        dest = self._acct(AccountKind.PENDING if lot.pending else AccountKind.AVAILABLE)
        out: list[Transaction] = []
        self._post(
            transfer(
                lot.id,
                TxKind.AWARD,
                self.user_id,
                at,
                [(Account.rule(lot.rule_id), dest, lot.amount)],
                rule_id=lot.rule_id,
                lot_id=lot.id,
            ),
            out,
        )
        if not lot.pending:
            self._repay(lot, f"{lot.id}:repay", at, out)
        return out

    def release_pending(self, lot_id: str, tx_id: str, at: datetime) -> list[Transaction]:
        """Make a pending lot spendable (no-op if it is not pending any more)."""
        lot = self.lots.get(lot_id)
        out: list[Transaction] = []
        if lot is None or not lot.pending:
            return out
        lot.pending = False
        moves = [(self._acct(AccountKind.PENDING), self._acct(AccountKind.AVAILABLE), lot.remaining)]
        self._post(
            transfer(
                tx_id, TxKind.RELEASE_PENDING, self.user_id, at, moves, rule_id=lot.rule_id, lot_id=lot.id
            ),
            out,
        )
        self._repay(lot, f"{tx_id}:repay", at, out)
        return out

    def _repay(self, lot: Lot, tx_id: str, at: datetime, out: list[Transaction]) -> None:
        amount = min(-self.balances.debt, lot.remaining)
        if amount > 0:
            lot.remaining -= amount
            moves = [(self._acct(AccountKind.AVAILABLE), self._acct(AccountKind.DEBT), amount)]
            self._post(transfer(tx_id, TxKind.DEBT_REPAYMENT, self.user_id, at, moves, lot_id=lot.id), out)

    def spendable(self, at: datetime) -> int:
        return sum(lot.remaining for lot in self.lots.values() if lot.spendable(at))

    def _allocate(self, amount: int, at: datetime, exclude: str | None = None) -> list[tuple[Lot, int]]:
        taken: list[tuple[Lot, int]] = []
        for lot in sorted(
            (x for x in self.lots.values() if x.spendable(at) and x.id != exclude), key=Lot.spend_order
        ):
            if amount <= 0:
                break
            n = min(amount, lot.remaining)
            taken.append((lot, n))
            amount -= n
        return taken

    def hold(self, hold_id: str, amount: int, at: datetime, expires_at: datetime) -> Transaction:
        """Reserve `amount` points earliest-expiry-first, or raise InsufficientBalance."""
        if amount <= 0:
            raise ValueError("a hold is for a positive amount")
        if hold_id in self.holds:
            raise ValueError(f"hold {hold_id} exists")
        if self.spendable(at) < amount:
            raise InsufficientBalance(f"{amount} points asked, {self.spendable(at)} available")
        allocations = self._allocate(amount, at)
        for lot, n in allocations:
            lot.remaining -= n
        self.holds[hold_id] = Hold(hold_id, amount, at, expires_at, [(lot.id, n) for lot, n in allocations])
        out: list[Transaction] = []
        moves = [(self._acct(AccountKind.AVAILABLE), self._acct(AccountKind.HELD), amount)]
        self._post(transfer(hold_id, TxKind.HOLD, self.user_id, at, moves), out)
        return out[0]

    def confirm(self, hold_id: str, tx_id: str, at: datetime) -> Transaction | None:
        """Redeem an open hold (held → redemption sink); None if it is not open."""
        hold = self.holds.get(hold_id)
        if hold is None or hold.status != "held":
            return None
        hold.status = "confirmed"
        out: list[Transaction] = []
        self._post(
            transfer(
                tx_id,
                TxKind.CONFIRM,
                self.user_id,
                at,
                [(self._acct(AccountKind.HELD), REDEMPTION_SINK, hold.amount)],
            ),
            out,
        )
        return out[0]

    def release(self, hold_id: str, tx_id: str, at: datetime) -> Transaction | None:
        """Give an open hold's points back to their lots; a lot that expired meanwhile sends its
        share to the expiry sink instead. None if the hold is not open."""
        hold = self.holds.get(hold_id)
        if hold is None or hold.status != "held":
            return None
        hold.status = "released"
        back = gone = 0
        for lot_id, n in hold.allocations:
            lot = self.lots.get(lot_id)
            if lot is not None and not lot.expired and (lot.expires_at is None or lot.expires_at > at):
                lot.remaining += n
                back += n
            else:
                if lot is not None:
                    lot.expired_amount += n
                gone += n
        held = self._acct(AccountKind.HELD)
        out: list[Transaction] = []
        moves = [(held, self._acct(AccountKind.AVAILABLE), back), (held, EXPIRY_SINK, gone)]
        self._post(transfer(tx_id, TxKind.RELEASE, self.user_id, at, moves), out)
        return out[0] if out else None

    def expire(self, lot_id: str, tx_id: str, at: datetime) -> Transaction | None:
        """Expire a lot's unspent remainder, once. None if already expired, unknown, or not due."""
        lot = self.lots.get(lot_id)
        if lot is None or lot.expired or lot.expires_at is None or lot.expires_at > at:
            return None
        lot.expired = True
        amount, lot.remaining = lot.remaining, 0
        lot.expired_amount += amount
        source = self._acct(AccountKind.PENDING if lot.pending else AccountKind.AVAILABLE)
        out: list[Transaction] = []
        self._post(
            transfer(
                tx_id,
                TxKind.EXPIRY,
                self.user_id,
                at,
                [(source, EXPIRY_SINK, amount)],
                rule_id=lot.rule_id,
                lot_id=lot.id,
            ),
            out,
        )
        return out[0] if out else None

    def reverse(self, lot_id: str, tx_id: str, at: datetime, amount: int | None = None) -> ReversalResult:
        """Take back `amount` (default: all that is left) of an award, linked to it."""
        lot = self.lots.get(lot_id)
        if lot is None or tx_id in lot.reversals:
            return ReversalResult(None, 0, 0)
        left = lot.amount - lot.reversed - lot.expired_amount
        want = left if amount is None else max(0, min(amount, left))
        if want <= 0:
            return ReversalResult(None, 0, 0)
        own = min(lot.remaining, want)
        lot.remaining -= own
        source = self._acct(AccountKind.PENDING if lot.pending else AccountKind.AVAILABLE)
        moves = [(source, Account.rule(lot.rule_id), own)]
        others = 0
        for other, n in self._allocate(want - own, at, exclude=lot.id):
            other.remaining -= n
            others += n
        moves.append((self._acct(AccountKind.AVAILABLE), Account.rule(lot.rule_id), others))
        shortfall = want - own - others
        moves.append((self._acct(AccountKind.DEBT), Account.rule(lot.rule_id), shortfall))
        lot.reversed += want
        lot.reversals.append(tx_id)
        out: list[Transaction] = []
        self._post(
            transfer(
                tx_id,
                TxKind.REVERSAL,
                self.user_id,
                at,
                moves,
                rule_id=lot.rule_id,
                lot_id=lot.id,
                reverses=lot.id,
            ),
            out,
        )
        return ReversalResult(out[0] if out else None, own + others, shortfall)

    def find_by_reference(self, rule_id: str, reference: str) -> Lot | None:
        return next(
            (x for x in self.lots.values() if x.rule_id == rule_id and x.reference == reference), None
        )

    def prune(self, now: datetime) -> None:
        """Forget expired lots no open hold refers to, and holds finished for `FINISHED_HOLDS_KEPT`
        (kept so that a repeated reserve with the same idempotency key finds its hold)."""
        oldest = now - FINISHED_HOLDS_KEPT
        self.holds = {k: h for k, h in self.holds.items() if h.status == "held" or h.created_at > oldest}
        in_use = {lot_id for h in self.holds.values() if h.status == "held" for lot_id, _ in h.allocations}
        self.lots = {k: x for k, x in self.lots.items() if not x.expired or k in in_use}
