"""Frequency caps: rolling windows, per user across campaigns and per campaign; never exceeded
for any sequence of send attempts, and a send is refused only when a window is really full."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.notifier.domain.caps import FrequencyCap, SentRecord, check_caps, prune

T0 = datetime(2024, 3, 5, 12, tzinfo=UTC)
DAY = FrequencyCap(limit=2, period="1d")
WEEK = FrequencyCap(limit=1, period="7d")


def check(sent: list[SentRecord], campaign: str, now: datetime, *, exempt: bool = False) -> str | None:
    verdict = check_caps(
        sent, campaign, global_caps=[DAY], campaign_caps=[WEEK], counts_globally=not exempt, now=now
    )
    return None if verdict.allowed else verdict.cap


def test_global_cap_counts_every_campaign_in_a_rolling_window() -> None:
    sent = [SentRecord("a", T0), SentRecord("b", T0 + timedelta(hours=1))]
    assert check(sent, "c", T0 + timedelta(hours=2)) == "global:2/1d"
    # rolling, not calendar: exactly one day after the first send it leaves the window
    assert check(sent, "c", T0 + timedelta(days=1)) is None


def test_campaign_cap_counts_only_that_campaign() -> None:
    sent = [SentRecord("a", T0)]
    assert check(sent, "a", T0 + timedelta(days=3)) == "campaign:1/7d"
    assert check(sent, "b", T0 + timedelta(days=3)) is None
    assert check(sent, "a", T0 + timedelta(days=7)) is None


def test_exempt_campaigns_neither_obey_nor_count_towards_global_caps() -> None:
    sent = [SentRecord("a", T0), SentRecord("b", T0)]
    assert check(sent, "support", T0, exempt=True) is None
    internal = [SentRecord("support", T0, global_caps=False)] * 5
    assert check(internal, "a", T0) is None


def test_prune_keeps_only_what_the_longest_window_can_see() -> None:
    sent = [SentRecord("a", T0 - timedelta(days=8)), SentRecord("b", T0 - timedelta(days=1))]
    assert prune(sent, timedelta(days=7), T0) == [sent[1]]


def test_labels() -> None:
    assert FrequencyCap(limit=3, period="12h").label("global") == "global:3/12h"
    assert FrequencyCap(limit=3, period="90s").label("campaign") == "campaign:3/90s"


caps = st.lists(
    st.builds(
        FrequencyCap,
        limit=st.integers(1, 4),
        period=st.integers(1, 72).map(lambda h: timedelta(hours=h)),
    ),
    max_size=3,
)
attempts = st.lists(
    st.tuples(st.integers(0, 14 * 24 * 60), st.sampled_from(["a", "b", "c"]), st.booleans()),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(
    global_caps=caps, campaign_caps=st.dictionaries(st.sampled_from(["a", "b", "c"]), caps), tries=attempts
)
def test_caps_are_never_exceeded_and_never_over_applied(
    global_caps: list[FrequencyCap],
    campaign_caps: dict[str, list[FrequencyCap]],
    tries: list[tuple[int, str, bool]],
) -> None:
    sent: list[SentRecord] = []
    for minute, campaign, counts in sorted(tries):
        now = T0 + timedelta(minutes=minute)
        own = campaign_caps.get(campaign, [])
        verdict = check_caps(
            sent, campaign, global_caps=global_caps, campaign_caps=own, counts_globally=counts, now=now
        )
        full = [
            cap
            for cap in (global_caps if counts else [])
            if sum(1 for s in sent if s.global_caps and now - cap.period < s.at <= now) >= cap.limit
        ] + [
            cap
            for cap in own
            if sum(1 for s in sent if s.campaign == campaign and now - cap.period < s.at <= now) >= cap.limit
        ]
        assert verdict.allowed == (not full)
        if verdict.allowed:
            sent.append(SentRecord(campaign, now, counts))
    for s in sent:  # every window ending at a send holds at most `limit` counted sends
        for cap in global_caps:
            assert sum(1 for o in sent if o.global_caps and s.at - cap.period < o.at <= s.at) <= cap.limit
        for cap in campaign_caps.get(s.campaign, []):
            window = [o for o in sent if o.campaign == s.campaign and s.at - cap.period < o.at <= s.at]
            assert len(window) <= cap.limit
