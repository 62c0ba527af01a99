"""Write keys: HTTP Basic parsing and the key ring (domain/write_key.py)."""

from __future__ import annotations

from base64 import b64encode

import pytest

from services.ingest.domain.errors import Unauthorized
from services.ingest.domain.write_key import KeyRing, SourceKey, key_from_basic_auth


def basic(credentials: str) -> str:
    return "Basic " + b64encode(credentials.encode()).decode()


def test_the_key_is_the_basic_user_name() -> None:
    assert key_from_basic_auth(basic("wk_123:")) == "wk_123"
    assert key_from_basic_auth(basic("wk_123:ignored-password")) == "wk_123"
    assert key_from_basic_auth("basic " + b64encode(b"k:").decode()) == "k"


def test_no_header_or_no_user_means_no_key() -> None:
    assert key_from_basic_auth(None) is None
    assert key_from_basic_auth("") is None
    assert key_from_basic_auth(basic(":")) is None


@pytest.mark.parametrize(
    "header", ["Bearer abc", "Basic !!!notbase64", "Basic " + b64encode(b"\xff\xfe:").decode()]
)
def test_malformed_authorization_is_refused(header: str) -> None:
    with pytest.raises(Unauthorized):
        key_from_basic_auth(header)


RING = KeyRing([SourceKey("key-web", "web"), SourceKey("key-old", "old", enabled=False)])


def test_a_known_key_names_its_source() -> None:
    assert RING.authenticate("key-web") == "web"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, "a write key is required"),
        ("", "a write key is required"),
        ("key-nope", "invalid write key"),
        ("key-old", "the source of this write key is disabled"),
        (123, "writeKey: must be a string"),
    ],
)
def test_unknown_missing_and_disabled_keys_are_refused(key: object, message: str) -> None:
    with pytest.raises(Unauthorized, match=message) as info:
        RING.authenticate(key)
    assert "key-" not in info.value.message  # never echo a key back


def test_keys_are_not_shown_in_reprs() -> None:
    assert "key-web" not in repr(SourceKey("key-web", "web"))
