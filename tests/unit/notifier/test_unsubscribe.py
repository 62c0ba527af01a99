"""Signed one-click unsubscribe links: valid ones verify, anything forged, altered or expired
does not, and a rotated secret keeps old links working."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from services.notifier.domain.unsubscribe import (
    InvalidToken,
    UnsubscribeSigner,
    one_click_headers,
    scope_for,
    unsubscribe_input,
    verify,
)

NOW = datetime(2024, 3, 5, 12, tzinfo=UTC)
SIGNER = UnsubscribeSigner(b"k" * 32, "https://app.example.com/u?lang=en", timedelta(days=90))


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def test_link_round_trip() -> None:
    url = SIGNER.url("user-1", scope_for(topic="surveys"), NOW)
    assert url.startswith("https://app.example.com/u?lang=en&token=")
    claim = SIGNER.verify(token_of(url), NOW + timedelta(days=89))
    assert (claim.user_id, claim.scope) == ("user-1", "topic:surveys")
    assert claim.expires_at == NOW + timedelta(days=90)


def test_expired_link_is_refused() -> None:
    token = SIGNER.token("user-1", "all", NOW)
    with pytest.raises(InvalidToken, match="expired"):
        SIGNER.verify(token, NOW + timedelta(days=90))


@pytest.mark.parametrize("position", [0, 5, -1])
def test_any_altered_character_is_refused(position: int) -> None:
    token = SIGNER.token("user-1", "channel:email", NOW)
    chars = list(token)
    chars[position] = "A" if chars[position] != "A" else "B"
    with pytest.raises(InvalidToken):
        SIGNER.verify("".join(chars), NOW)


def test_a_token_for_another_user_cannot_be_forged_from_a_valid_one() -> None:
    _, _, signature = SIGNER.token("user-1", "all", NOW).partition(".")
    other, _, _ = SIGNER.token("user-2", "all", NOW).partition(".")
    with pytest.raises(InvalidToken, match="bad signature"):
        SIGNER.verify(f"{other}.{signature}", NOW)


def test_another_secret_is_refused_and_rotation_keeps_old_links() -> None:
    old = UnsubscribeSigner(b"o" * 32, SIGNER.base_url)
    token = old.token("user-1", "all", NOW)
    with pytest.raises(InvalidToken, match="bad signature"):
        SIGNER.verify(token, NOW)
    rotated = UnsubscribeSigner(b"n" * 32, SIGNER.base_url, previous=(b"o" * 32,))
    assert rotated.verify(token, NOW).user_id == "user-1"
    assert verify(token, [b"x" * 32, b"o" * 32], NOW).scope == "all"


@pytest.mark.parametrize("junk", ["", ".", "abc", "abc.", ".abc", "a.b.c", "éé.éé", "!!!.###"])
def test_garbage_is_malformed_not_a_crash(junk: str) -> None:
    with pytest.raises(InvalidToken):
        SIGNER.verify(junk, NOW)


def test_short_secret_and_separator_in_user_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        UnsubscribeSigner(b"short", "https://x.example")
    with pytest.raises(ValueError, match="U\\+001F"):
        SIGNER.token("a\x1fb", "all", NOW)


def test_scopes_and_one_click_headers() -> None:
    assert scope_for(channel="email") == "channel:email"
    assert scope_for() == "all"
    with pytest.raises(ValueError, match="not both"):
        scope_for(channel="email", topic="surveys")
    assert one_click_headers("https://x.example/u?token=t") == {
        "List-Unsubscribe": "<https://x.example/u?token=t>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def test_a_verified_link_becomes_one_idempotent_preference_change() -> None:
    token = SIGNER.token("user-1", "topic:surveys", NOW)
    claim = SIGNER.verify(token, NOW)
    first = unsubscribe_input(claim, token, NOW)
    again = unsubscribe_input(claim, token, NOW + timedelta(minutes=5))
    assert (first.user_id, first.scope, first.subscribed) == ("user-1", "topic:surveys", False)
    assert first.input_id == again.input_id
    other = SIGNER.token("user-1", "topic:surveys", NOW + timedelta(days=1))
    assert unsubscribe_input(claim, other, NOW).input_id != first.input_id
