"""Topic names: the contract of DESIGN.md §1. Every topic is keyed by the user id."""

from typing import Final

EVENTS: Final = "userops.events.v1"
LIFECYCLE: Final = "userops.lifecycle.v1"
REWARDS: Final = "userops.rewards.v1"
DELIVERIES: Final = "userops.deliveries.v1"
DEADLETTER: Final = "userops.deadletter.v1"

ALL_TOPICS: Final = (EVENTS, LIFECYCLE, REWARDS, DELIVERIES, DEADLETTER)
