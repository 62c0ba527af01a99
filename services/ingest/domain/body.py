"""Request bodies: bounded gzip decompression and JSON parsing.

The request limit applies to the decompressed bytes, and decompression stops one byte past the
limit, so a small gzip bomb costs at most `max_bytes` of memory before it is refused.
"""

from __future__ import annotations

import json
import zlib
from math import isfinite
from typing import Any

import orjson

from services.ingest.domain.errors import InvalidRequest, PayloadTooLarge

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_IDENTITY = frozenset({"", "identity"})
_GZIP = frozenset({"gzip", "x-gzip"})


def too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is over the limit of {limit} bytes (got {size}+)")


def decode_body(raw: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """The request body as plain bytes, at most `max_bytes` long.

    Raises PayloadTooLarge over the limit, InvalidRequest for an unsupported encoding or a
    corrupt gzip stream. Several concatenated gzip members are read as one body (RFC 1952).
    """
    encoding = (content_encoding or "").strip().lower()
    if encoding in _IDENTITY:
        if len(raw) > max_bytes:
            raise too_large(len(raw), max_bytes)
        return raw
    if encoding not in _GZIP:
        raise InvalidRequest(f"Content-Encoding: {encoding[:40]!r} is not supported (use gzip)")
    return _gunzip(raw, max_bytes)


def _gunzip(data: bytes, max_bytes: int) -> bytes:
    out: list[bytes] = []
    size = 0
    while True:
        inflater = zlib.decompressobj(_GZIP_WBITS)
        try:
            chunk = inflater.decompress(data, max_bytes - size + 1)
        except zlib.error as exc:
            raise InvalidRequest("body: not a valid gzip stream") from exc
        size += len(chunk)
        if size > max_bytes:
            raise too_large(size, max_bytes)
        out.append(chunk)
        if not inflater.eof:
            if inflater.unconsumed_tail:  # output was capped exactly at the limit
                raise too_large(size + 1, max_bytes)
            raise InvalidRequest("body: gzip stream is truncated")
        data = inflater.unused_data
        if not data.strip(b"\0"):  # trailing zero padding is allowed by gzip tools
            return b"".join(out)


def parse_json(body: bytes) -> Any:
    """Parse a JSON body, or raise InvalidRequest saying where it is malformed.

    orjson refuses `NaN`, `Infinity` and numbers that overflow a double (`1e400`) as malformed
    JSON. Such a body is parsed again, leniently, only to name the first non-finite number's
    path (`batch[3].properties.revenue: must be a finite number`).
    """
    if not body:
        raise InvalidRequest("body: must be a JSON object (got an empty body)")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        path = _non_finite_path(body)
        if path is not None:
            raise InvalidRequest(f"{path}: must be a finite number") from None
        raise InvalidRequest(f"body: malformed JSON: {exc}") from exc


def _non_finite_path(body: bytes) -> str | None:
    """The path of the first non-finite number in a body orjson refused, if that was why."""
    try:
        parsed = json.loads(body, parse_int=float)  # as orjson reads a huge integer
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[str, Any]] = [("", parsed)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, float) and not isfinite(value):
            return path or "body"
        if isinstance(value, dict):
            prefix = f"{path}." if path else ""
            stack.extend((f"{prefix}{key[:40]}", item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in reversed(list(enumerate(value))))
    return None
