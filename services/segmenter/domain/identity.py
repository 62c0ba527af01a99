"""Which profile an event belongs to, and which anonymous profile it ties to a user (alias).

A profile is keyed by `userId`, else `anonymousId`. An `alias` event (`previousId` → `userId`),
or any event carrying both a `userId` and a different `anonymousId`, links the anonymous id to
the user: the anonymous profile is merged into the user's (`merge.merge_alias`) and later events
sent under the anonymous id alone go to the user's profile.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.events import Event


def identity_link(event: Event) -> tuple[str, str] | None:
    """(anonymous or previous id, user id) that `event` ties together, or None."""
    if event.user_id is None:
        return None
    other = event.previous_id if event.type == "alias" else event.anonymous_id
    if other is None or other == event.user_id:
        return None
    return other, event.user_id


def profile_id(event: Event, links: Mapping[str, str]) -> str:
    """The profile `event` applies to, given the known links (anonymous id → user id)."""
    if event.user_id is not None:
        return event.user_id
    anonymous = event.anonymous_id or ""
    return links.get(anonymous, anonymous)
