"""Write keys: where a request carries one, and which source it belongs to.

Keys are looked up by their SHA-256 digest, so the lookup time says nothing about how much of a
guessed key was right, and the key itself is never kept in an error message or a log.
"""

from __future__ import annotations

import binascii
import hashlib
from base64 import b64decode
from collections.abc import Iterable
from dataclasses import dataclass

from services.ingest.domain.errors import Unauthorized


@dataclass(frozen=True, slots=True)
class SourceKey:
    """A source's write key as configured; `repr` hides the key."""

    key: str
    source_id: str
    enabled: bool = True

    def __repr__(self) -> str:
        return f"SourceKey(source_id={self.source_id!r}, enabled={self.enabled})"


def key_from_basic_auth(header: str | None) -> str | None:
    """The write key of an `Authorization: Basic base64(key:)` header; None without a header.

    Segment SDKs send the key as the user name and an empty password; a password, if any, is
    ignored. A malformed Basic header is refused rather than silently ignored.
    """
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise Unauthorized("Authorization: only HTTP Basic with the write key as user is supported")
    try:
        decoded = b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise Unauthorized("Authorization: malformed Basic credentials") from exc
    key, _, _password = decoded.partition(":")
    return key or None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class KeyRing:
    """The configured write keys; `authenticate` maps a key to its source id."""

    def __init__(self, keys: Iterable[SourceKey]) -> None:
        self._by_digest = {_digest(k.key): k for k in keys}

    def authenticate(self, key: object) -> str:
        """The id of the enabled source owning `key`, else Unauthorized."""
        if key is None or key == "":
            raise Unauthorized(
                "a write key is required (HTTP Basic user, `writeKey` in the body, or ?writeKey=)"
            )
        if not isinstance(key, str):
            raise Unauthorized("writeKey: must be a string")
        found = self._by_digest.get(_digest(key))
        if found is None:
            raise Unauthorized("invalid write key")
        if not found.enabled:
            raise Unauthorized("the source of this write key is disabled")
        return found.source_id
