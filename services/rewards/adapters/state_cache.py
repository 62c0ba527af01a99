"""Decoded user states kept in memory between units of work, checked against the stored version.

Decoding a user's state (JSON with every live lot) is the largest cost of a batch after the
decisions themselves. Every save bumps `accounts.version`; a unit of work that locks a user
takes the cached state only if its version is the stored one (any other writer — a replica, the
API, a timer — bumps it), and *takes it out* of the cache while it works on it, since `decide`
mutates states in place. States go back in only when their transaction commits, so a rolled-back
unit never leaves a half-applied state behind.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from services.rewards.domain.state import UserRewardsState


class StateCache:
    """A bounded LRU map user id → (stored version, state)."""

    def __init__(self, size: int = 50_000) -> None:
        self._size = size
        self._items: OrderedDict[str, tuple[int, UserRewardsState]] = OrderedDict()

    def take(self, user_id: str, version: int) -> UserRewardsState | None:
        """The cached state of `user_id` if it is at `version` (removed from the cache)."""
        item = self._items.pop(user_id, None)
        return item[1] if item is not None and item[0] == version else None

    def put(self, states: Iterable[tuple[str, int, UserRewardsState]]) -> None:
        for user_id, version, state in states:
            self._items[user_id] = (version, state)
            self._items.move_to_end(user_id)
        while len(self._items) > self._size:
            self._items.popitem(last=False)
