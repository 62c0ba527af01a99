"""Kafka client factories with the reliability settings of DESIGN.md §3 baked in."""

from __future__ import annotations

import struct
from typing import Any, Final

from aiokafka import AIOKafkaProducer


def create_producer(bootstrap: str, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer that waits for all in-sync replicas (`acks=all`).

    Built here, not at import time; the caller's lifespan starts and stops it. `request_timeout_ms`
    bounds a send, so a dead broker surfaces as an error instead of a hang.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_batch_size": 256 * 1024,
        "max_request_size": 2 * 1024 * 1024,
        "request_timeout_ms": 10_000,
        "retry_backoff_ms": 100,
        "compression_type": None,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


_MURMUR_SEED: Final = 0x9747B28C
_MURMUR_M: Final = 0x5BD1E995
_MASK32: Final = 0xFFFFFFFF
_words = struct.Struct("<I").iter_unpack


def murmur2(data: bytes) -> int:
    """Murmur2 of `data` as an unsigned 32-bit integer, as Kafka's clients compute it.

    Reads the key four bytes at a time: about twice as fast as aiokafka's byte-by-byte version.
    """
    length = len(data)
    h = _MURMUR_SEED ^ length
    n4 = length & ~3
    if n4:
        for (k,) in _words(data[:n4]):
            k = (k * _MURMUR_M) & _MASK32
            k ^= k >> 24
            h = ((h * _MURMUR_M) & _MASK32) ^ ((k * _MURMUR_M) & _MASK32)
    extra = length & 3
    if extra:
        if extra == 3:
            h ^= data[n4 + 2] << 16
        if extra >= 2:
            h ^= data[n4 + 1] << 8
        h = ((h ^ data[n4]) * _MURMUR_M) & _MASK32
    h ^= h >> 13
    h = (h * _MURMUR_M) & _MASK32
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for `key` among `partitions`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
