"""The double-entry points ledger: accounts, entries and transactions.

Amounts are integer points. An entry credits (`amount > 0`) or debits (`amount < 0`) one
account; a `Transaction` is a set of entries that sums to zero, checked at construction, so an
unbalanced transaction cannot exist. Transactions are append-only: a correction is a new
transaction whose `reverses` names the original.

Accounts:
- per user: `available` (spendable), `pending` (awarded, not yet spendable), `held` (reserved by
  a redemption), `debt` (negative when a reversal found the points already spent);
- per rule: `rule` — the funding account every award of that rule is drawn from; its balance is
  minus the rule's net issuance, so a budget's remaining amount is `limit + balance`;
- sinks: `expiry` (expired points) and `redemption` (confirmed redemptions).

A `Lot` is the points of one award (its own expiry, what remains unspent); a `Hold` is a
redemption reserve with the (lot, points) it took; `Balances` are a user's account balances.
The operations that move points between them live in `book.PointsBook`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, Literal


class AccountKind(StrEnum):
    AVAILABLE = "available"
    PENDING = "pending"
    HELD = "held"
    DEBT = "debt"
    RULE = "rule"
    EXPIRY = "expiry"
    REDEMPTION = "redemption"


USER_KINDS: Final = frozenset(
    {AccountKind.AVAILABLE, AccountKind.PENDING, AccountKind.HELD, AccountKind.DEBT}
)


class TxKind(StrEnum):
    AWARD = "award"
    RELEASE_PENDING = "release_pending"
    REVERSAL = "reversal"
    EXPIRY = "expiry"
    HOLD = "hold"
    CONFIRM = "confirm"
    RELEASE = "release"
    DEBT_REPAYMENT = "debt_repayment"


@dataclass(frozen=True, slots=True, order=True)
class Account:
    """A ledger account: its kind and owner (a user id, a rule id, or "" for a sink)."""

    kind: AccountKind
    owner: str = ""

    @classmethod
    def user(cls, kind: AccountKind, user_id: str) -> Account:
        if kind not in USER_KINDS:
            raise ValueError(f"{kind} is not a user account kind")
        return cls(kind, user_id)

    @classmethod
    def rule(cls, rule_id: str) -> Account:
        return cls(AccountKind.RULE, rule_id)


_FAR: Final = datetime.max.replace(tzinfo=UTC)
EXPIRY_SINK: Final = Account(AccountKind.EXPIRY)
REDEMPTION_SINK: Final = Account(AccountKind.REDEMPTION)


class UnbalancedTransaction(ValueError):
    """A transaction whose entries do not sum to zero (or are otherwise malformed)."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One side of a transaction: `amount` points credited (+) or debited (-) to `account`."""

    account: Account
    amount: int


@dataclass(frozen=True, slots=True)
class Transaction:
    """An atomic, balanced movement of points. Invariants (checked here): at least two entries,
    every amount a non-zero int, the amounts summing to zero. `id` is deterministic
    (`output_id(input_id, rule)`); `reverses` links a reversal to the transaction it corrects;
    `lot_id` names the lot it concerns, if any."""

    id: str
    kind: TxKind
    user_id: str
    at: datetime
    entries: tuple[LedgerEntry, ...]
    rule_id: str | None = None
    lot_id: str | None = None
    reverses: str | None = None

    def __post_init__(self) -> None:
        if len(self.entries) < 2:
            raise UnbalancedTransaction(f"transaction {self.id} needs at least two entries")
        for entry in self.entries:
            if type(entry.amount) is not int or entry.amount == 0:
                raise UnbalancedTransaction(f"transaction {self.id}: amounts must be non-zero ints")
        total = sum(e.amount for e in self.entries)
        if total != 0:
            raise UnbalancedTransaction(f"transaction {self.id} sums to {total}, not zero")

    def amount_for(self, account: Account) -> int:
        return sum(e.amount for e in self.entries if e.account == account)


def transfer(
    tx_id: str,
    kind: TxKind,
    user_id: str,
    at: datetime,
    moves: Iterable[tuple[Account, Account, int]],
    *,
    rule_id: str | None = None,
    lot_id: str | None = None,
    reverses: str | None = None,
) -> Transaction | None:
    """A transaction moving each `(source, destination, amount)`; zero moves are dropped and
    entries on the same account are merged. None if nothing moves."""
    net: dict[Account, int] = {}
    for source, dest, amount in moves:
        if amount < 0:
            raise UnbalancedTransaction("a move amount must not be negative")
        net[source] = net.get(source, 0) - amount
        net[dest] = net.get(dest, 0) + amount
    entries = tuple(LedgerEntry(a, n) for a, n in sorted(net.items()) if n)
    if not entries:
        return None
    return Transaction(tx_id, kind, user_id, at, entries, rule_id, lot_id, reverses)


def balances_from(transactions: Iterable[Transaction]) -> dict[Account, int]:
    """Every account's balance: the sum of its entries (what stored balances must equal)."""
    out: dict[Account, int] = {}
    for tx in transactions:
        for entry in tx.entries:
            out[entry.account] = out.get(entry.account, 0) + entry.amount
    return out


@dataclass(slots=True)
class Lot:
    """The points of one award. `id` is the award's transaction id."""

    id: str
    rule_id: str
    amount: int
    remaining: int
    earned_at: datetime
    expires_at: datetime | None
    pending: bool = False
    reference: str | None = None
    reversed: int = 0
    expired_amount: int = 0
    expired: bool = False
    # The ids of the reversal transactions already booked against this award: a reversal
    # applied again under the same id (a retried adjustment) takes nothing back twice.
    reversals: list[str] = field(default_factory=list)

    def spend_order(self) -> tuple[bool, datetime, datetime, str]:
        return (self.expires_at is None, self.expires_at or _FAR, self.earned_at, self.id)

    def spendable(self, at: datetime) -> bool:
        return (
            not self.pending
            and not self.expired
            and self.remaining > 0
            and (self.expires_at is None or self.expires_at > at)
        )


@dataclass(slots=True)
class Hold:
    """A redemption reserve: `allocations` are the (lot id, points) it took from lots."""

    id: str
    amount: int
    created_at: datetime
    expires_at: datetime
    allocations: list[tuple[str, int]]
    status: Literal["held", "confirmed", "released"] = "held"


@dataclass(slots=True)
class Balances:
    """The user's account balances; `debt` is ≤ 0 (minus what the user owes)."""

    available: int = 0
    pending: int = 0
    held: int = 0
    debt: int = 0

    def apply(self, tx: Transaction, user_id: str) -> None:
        for entry in tx.entries:
            if entry.account.owner != user_id:
                continue
            kind = entry.account.kind
            if kind is AccountKind.AVAILABLE:
                self.available += entry.amount
            elif kind is AccountKind.PENDING:
                self.pending += entry.amount
            elif kind is AccountKind.HELD:
                self.held += entry.amount
            elif kind is AccountKind.DEBT:
                self.debt += entry.amount
