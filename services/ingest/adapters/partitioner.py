"""Kafka's default key partitioner (murmur2), as the Java client and aiokafka compute it.

Computed here so the publisher can hand aiokafka an explicit partition: the result is identical
to the default partitioner's, but reading the key four bytes at a time is about twice as fast as
aiokafka's byte-by-byte version, and this runs once per event.
"""

from __future__ import annotations

import struct
from typing import Final

_SEED: Final = 0x9747B28C
_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF
_words = struct.Struct("<I").iter_unpack


def murmur2(data: bytes) -> int:
    """Murmur2 of `data` as an unsigned 32-bit integer (org.apache.kafka.common.utils.Utils)."""
    length = len(data)
    h = _SEED ^ length
    n4 = length & ~3
    if n4:
        for (k,) in _words(data[:n4]):
            k = (k * _M) & _MASK
            k ^= k >> 24
            h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    extra = length & 3
    if extra:
        if extra == 3:
            h ^= data[n4 + 2] << 16
        if extra >= 2:
            h ^= data[n4 + 1] << 8
        h = ((h ^ data[n4]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition the default partitioner picks for `key` among `partitions`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
