"""Body decoding: gzip bounded by the request limit, malformed bodies (domain/body.py)."""

from __future__ import annotations

import gzip
import os
import tracemalloc

import pytest

from services.ingest.domain.body import decode_body, parse_json
from services.ingest.domain.errors import InvalidRequest, PayloadTooLarge


def test_plain_bodies_pass_through_under_the_limit() -> None:
    assert decode_body(b'{"a":1}', None, 10) == b'{"a":1}'
    assert decode_body(b'{"a":1}', "identity", 10) == b'{"a":1}'
    with pytest.raises(PayloadTooLarge, match="over the limit of 5 bytes"):
        decode_body(b'{"a":1}', None, 5)


def test_gzip_bodies_are_decompressed() -> None:
    body = b'{"batch": []}' * 100
    assert decode_body(gzip.compress(body), "gzip", 10_000) == body
    assert decode_body(gzip.compress(body), " GZIP ", 10_000) == body


def test_the_limit_applies_after_decompression() -> None:
    body = b"x" * 5001
    compressed = gzip.compress(body)
    assert len(compressed) < 100
    with pytest.raises(PayloadTooLarge):
        decode_body(compressed, "gzip", 5000)
    assert decode_body(gzip.compress(body[:5000]), "gzip", 5000) == body[:5000]


def test_a_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = gzip.compress(b"\0" * (32 * 1024 * 1024), compresslevel=9)  # 32 MB of zeros
    assert len(bomb) < 40_000
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge):
            decode_body(bomb, "gzip", 512_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024


def test_concatenated_gzip_members_form_one_body() -> None:
    assert decode_body(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip", 100) == b"abcd"
    with pytest.raises(PayloadTooLarge):
        decode_body(gzip.compress(b"a" * 60) + gzip.compress(b"b" * 60), "gzip", 100)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not gzip at all", "body: not a valid gzip stream"),
        (gzip.compress(b'{"a": 1}')[:-6], "body: gzip stream is truncated"),
        (gzip.compress(b"{}") + b"garbage!", "body: not a valid gzip stream"),
    ],
)
def test_corrupt_gzip_is_a_400(data: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        decode_body(data, "gzip", 1000)


def test_unsupported_encodings_are_a_400() -> None:
    with pytest.raises(InvalidRequest, match="Content-Encoding: 'br' is not supported"):
        decode_body(os.urandom(10), "br", 1000)


def test_malformed_json_says_where() -> None:
    assert parse_json(b'{"a": [1, 2]}') == {"a": [1, 2]}
    with pytest.raises(InvalidRequest, match=r"body: malformed JSON: .*line 1 column"):
        parse_json(b'{"a": ')
    with pytest.raises(InvalidRequest, match="empty body"):
        parse_json(b"")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"batch":[{"a":1},{"properties":{"revenue":1e400}}]}', "batch[1].properties.revenue"),
        (b'{"properties":{"revenue":-1e400}}', "properties.revenue"),
        (b'{"traits":{"scores":[1, NaN]}}', "traits.scores[1]"),
        (b'{"context":{"x":Infinity}}', "context.x"),
        (b'{"context":{"x":-Infinity}}', "context.x"),
        (b'{"userId":' + b"9" * 400 + b"}", "userId"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_path(body: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_json(body)
    assert info.value.message == f"{message}: must be a finite number"


def test_odd_but_finite_numbers_and_number_like_strings_are_kept() -> None:
    body = b'{"a":1e308,"b":-1e-400,"c":"NaN","d":"Infinity","e":18446744073709551616}'
    assert parse_json(body) == {"a": 1e308, "b": -0.0, "c": "NaN", "d": "Infinity", "e": 2.0**64}
    with pytest.raises(InvalidRequest, match="body: malformed JSON"):
        parse_json(b'{"a": nan')
