"""Frequency caps: at most `limit` messages in any rolling `period` (DESIGN.md §6, REFERENCE.md).

Caps are rolling windows (OneSignal's semantics): a send at `now` is allowed by a cap when fewer
than `limit` counted sends lie in `(now - period, now]`. A user's global caps count their sends of
every campaign that takes part in global caps; a campaign's own caps count its sends only. A send
refused by a cap is *capped*: recorded and reported, never silently lost, and not retried (a
capped message would be stale by the time the window frees up).

`check_caps` is pure: the caller passes the user's recent sends. If every allowed send is
recorded, no window of any cap ever holds more than `limit` sends (a property test checks this
for arbitrary send sequences).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import Field

from services.notifier.domain.duration import Duration
from shared.config import StrictModel


class FrequencyCap(StrictModel):
    """At most `limit` sends in any rolling window of length `period`."""

    limit: int = Field(ge=1, le=1000)
    period: Duration

    def label(self, scope: str) -> str:
        """A stable name for reports, e.g. `global:3/1d` or `campaign:1/7d`."""
        seconds = int(self.period.total_seconds())
        unit = "d" if seconds % 86400 == 0 else "h" if seconds % 3600 == 0 else "s"
        amount = seconds // {"d": 86400, "h": 3600, "s": 1}[unit]
        return f"{scope}:{self.limit}/{amount}{unit}"


@dataclass(frozen=True, slots=True)
class SentRecord:
    """One message that went out to the user: its campaign, the instant, and whether it counts
    towards the user's global caps."""

    campaign: str
    at: datetime
    global_caps: bool = True


@dataclass(frozen=True, slots=True)
class CapVerdict:
    """`allowed`, or the label of the first cap that refuses the send."""

    allowed: bool
    cap: str | None = None


ALLOWED = CapVerdict(True)


def check_caps(
    sent: Iterable[SentRecord],
    campaign: str,
    *,
    global_caps: Iterable[FrequencyCap],
    campaign_caps: Iterable[FrequencyCap],
    counts_globally: bool,
    now: datetime,
) -> CapVerdict:
    """May `campaign` send to this user at `now`, given the user's `sent` history?

    `counts_globally` is false for a campaign exempt from the global caps (its sends are then
    neither limited by nor counted towards them).
    """
    history = list(sent)
    if counts_globally:
        for cap in global_caps:
            if _count(history, cap.period, now, None) >= cap.limit:
                return CapVerdict(False, cap.label("global"))
    for cap in campaign_caps:
        if _count(history, cap.period, now, campaign) >= cap.limit:
            return CapVerdict(False, cap.label("campaign"))
    return ALLOWED


def _count(history: list[SentRecord], period: timedelta, now: datetime, campaign: str | None) -> int:
    since = now - period
    return sum(
        1
        for s in history
        if since < s.at <= now and (s.campaign == campaign if campaign is not None else s.global_caps)
    )


def prune(sent: Iterable[SentRecord], keep: timedelta, now: datetime) -> list[SentRecord]:
    """The sends still inside the longest cap window (`keep`), oldest first: the projection keeps
    only these, so its size is bounded by the caps."""
    return sorted((s for s in sent if s.at > now - keep), key=lambda s: s.at)


__all__ = ["ALLOWED", "CapVerdict", "FrequencyCap", "SentRecord", "check_caps", "prune"]
